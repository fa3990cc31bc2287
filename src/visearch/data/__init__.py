"""Data: the meta CSV contract, image decoding, transforms, class-disjoint splits, dataset adapters."""

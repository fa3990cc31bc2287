"""The folders a category's stages chain through under ``<home>/work/<category>/`` (CLI and in-process runs).

A pipeline run hands its steps kfp artifact folders instead; these names are for the runs on
one machine, so ``visearch preprocess``, ``train``, ``evaluate``, ``embed`` and ``upsert`` chain
without being told where the previous one wrote.
"""

MANIFEST = "manifest"
TRAINED = "train/model"
BASELINE = "baseline"
EVALUATION = "evaluation"
CHAMPION = "champion"

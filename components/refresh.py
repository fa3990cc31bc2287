"""Component `refresh`: the run's mode for one category; a refresh applies its change log without training."""


def refresh(category: str, mode: str = "full") -> str:
    """Returns ``"train"`` when the steps after it must run for this category, ``"refreshed"`` when it is done.

    ``mode``: ``full`` (train, gate and index), ``refresh`` (apply the change log with the champion,
    never train) or ``auto`` (refresh; train when the category's refresh policy says so).
    """
    from components.errors import step_errors
    from visearch.stages.refresh import refresh_step

    with step_errors():
        return refresh_step(category, mode)

"""The living catalogue: add, replace and remove images of a live category, kept in every later run.

See docs/catalogue-design.md.

- :mod:`.log`: the ordered change log in the object store; :mod:`.view`: base rows + log = a run's rows;
- :mod:`.rows`: validation of a written row; :mod:`.apply`: records → index points;
- :mod:`.writes`: :class:`Catalogue` (add / replace / remove / catch_up); :mod:`.replay`: before an alias swap;
- :mod:`.lock`: one writer per category.
"""

from visearch.catalogue.apply import Applied, Embed, apply_records, delete_points
from visearch.catalogue.lock import category_lock
from visearch.catalogue.log import ChangeLog, ChangeRecord
from visearch.catalogue.replay import ReplayResult, replay
from visearch.catalogue.rows import CheckedRow, check_row
from visearch.catalogue.view import catalogue_view, change_counts, data_version, net_changes
from visearch.catalogue.writes import Catalogue, WriteResult

__all__ = [
    "Applied",
    "Catalogue",
    "ChangeLog",
    "ChangeRecord",
    "CheckedRow",
    "Embed",
    "ReplayResult",
    "WriteResult",
    "apply_records",
    "catalogue_view",
    "category_lock",
    "change_counts",
    "check_row",
    "data_version",
    "delete_points",
    "net_changes",
    "replay",
]

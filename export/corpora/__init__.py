"""Training corpora: pinned fetch, conversion to plain files, splits, readers.

``fetch()`` (or ``seqserve data fetch``) builds, under ``export.paths.data_dir()``:

* ``sentiment/{train,dev,test}.tsv``: ``label<TAB>text`` (Pang & Lee snippets);
* ``tagging/{train,dev,test}.conll``: ``word<TAB>TAG``, universal tags (Brown);
* ``translation/{train,dev,test}.tsv``: ``en<TAB>es`` (WEB / Reina-Valera 1909).

The readers in :mod:`export.corpora.formats` load these and user-supplied
files in the same formats. Nothing here imports torch.
"""

from export.corpora.formats import FormatError, read_conll, read_parallel, read_sentiment
from export.corpora.pipeline import TASKS, fetch, split_paths

__all__ = ["FormatError", "TASKS", "fetch", "read_conll", "read_parallel", "read_sentiment", "split_paths"]

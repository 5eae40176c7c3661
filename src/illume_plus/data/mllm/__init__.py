"""MLLM training data: the four list formats, offline code grids, the weighted mixture, the collator.

- `records`: conversation / text / t2i / edit JSON-lines, bad lines counted with file:line
- `codes`:   offline pretokenisation of t2i and edit targets into DualViTok code grids, and reading them;
             `ImageCodeReader` for the discrete-input ablation
- `dataset`: the weighted mixture (one map-style dataset) with size keys for the bucket sampler
- `collator`: frames, labels on replies, condition dropout, length limit -> `TrainingBatch`
"""

from .codes import CodeStore, ImageCodeReader, pretokenize
from .collator import MllmCollator, TrainingBatch
from .dataset import MixtureDataset, SourceConfig, load_mixture
from .records import FORMATS, Record, read_records

__all__ = ["CodeStore", "ImageCodeReader", "pretokenize", "MllmCollator", "TrainingBatch", "MixtureDataset", "SourceConfig",
           "load_mixture", "FORMATS", "Record", "read_records"]

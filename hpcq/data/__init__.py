"""Data sets, splits, sentence embeddings and HDF5 shards.

Loaders read only the staged data root (`HPCQ_DATA`, else ./data), so compute nodes need no network.
"""

from hpcq.data.dataset import UNLABELLED, TextDataset
from hpcq.data.embed import EmbedReport, embed_dataset
from hpcq.data.glue import GLUE_TASKS, load_glue
from hpcq.data.paths import data_root, dataset_dir
from hpcq.data.ranks import partition
from hpcq.data.registry import DATASET_NAMES, load_dataset
from hpcq.data.sentence_model import PACKAGED, packaged_model_path
from hpcq.data.shards import EmbeddingTable, load_embeddings
from hpcq.data.splits import SplitIndices, paper_split, standard_split
from hpcq.data.sst2 import load_setfit_sst2, load_sst2_sentences
from hpcq.data.stage import StageReport, stage

__all__ = [
    "DATASET_NAMES",
    "GLUE_TASKS",
    "PACKAGED",
    "UNLABELLED",
    "EmbedReport",
    "EmbeddingTable",
    "SplitIndices",
    "StageReport",
    "TextDataset",
    "data_root",
    "dataset_dir",
    "embed_dataset",
    "load_dataset",
    "load_embeddings",
    "load_glue",
    "load_setfit_sst2",
    "load_sst2_sentences",
    "packaged_model_path",
    "paper_split",
    "partition",
    "stage",
    "standard_split",
]

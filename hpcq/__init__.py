"""hpcq: an HPC batch pipeline for qubit studies of quantum-enhanced language-model fine-tuning."""

__version__ = "0.1.0"

import os
import sys
from pathlib import Path

# the tests' shared helpers (e.g. circuit_factory) import as plain modules
sys.path.insert(0, str(Path(__file__).parent))
# local data copies next to the checkout, as in CI; a user's HPCQ_DATA wins
os.environ.setdefault("HPCQ_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))

"""Tables as GitHub-flavoured Markdown (pandas' to_markdown would need the extra `tabulate` package)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def cell(value: object) -> str:
    """One table cell: 4 significant digits for floats, n/a for NaN, pipes escaped."""
    if isinstance(value, (float, np.floating)):
        return "n/a" if not np.isfinite(value) else f"{value:.4g}"
    if value is None:
        return ""
    return str(value).replace("|", "/").replace("\n", " ")


def markdown_table(table: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body])

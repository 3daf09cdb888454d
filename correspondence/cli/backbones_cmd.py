"""``soco backbones``: the registry with each backbone's contract and where its weights resolve."""
from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("backbones", help="list registered backbones and their weight status")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..backbones import list_backbones
    from ..backbones.weights import candidate_paths

    table = Table(title="soco backbones")
    for column in ("name", "patch", "dim", "blocks", "outputs", "weights"):
        table.add_column(column)
    for spec in list_backbones():
        if spec.source is None:
            status = "none needed"
        else:
            local = next((p for p in candidate_paths(spec.source) if p.is_file()), None)
            status = f"found: {local}" if local else (f"download: {spec.source.url}" if spec.source.url
                                                      else f"local file only: {spec.source.filename}")
        c = spec.contract
        table.add_row(spec.name, str(c.patch_size), str(c.feature_dim), str(c.num_blocks),
                      ",".join(k.value for k in c.output_kinds), status)
    Console().print(table)
    return 0

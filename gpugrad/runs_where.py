"""What runs where: for every op, the implementations tried on each device kind, in order.

Read from the op table itself (the fast paths each op has registered, with the kernels they
run), so it is always current: ``gpugrad info --ops`` prints ``format_what_runs_where()``, and
the tests check ``kernels/README.md``'s "wired to" column against ``what_runs_where()``. The
backends register their fast paths when ``gpugrad`` is imported.
"""

from __future__ import annotations

from .dispatch import KINDS, OPS


def what_runs_where() -> list[dict]:
    """One row per (op, device kind, direction) with a fast path: the paths in the order they
    are tried (each with its kernels), then the reference. Ops with none run the reference
    everywhere and have no row."""
    rows = []
    for name, o in sorted(OPS.items()):
        for kind in KINDS:
            for direction, paths in (
                ("forward", o.fast_paths[kind]),
                ("backward", o.fast_backward_paths[kind]),
            ):
                if paths:
                    rows.append(
                        {
                            "op": name,
                            "kind": kind,
                            "direction": direction,
                            "paths": [(p.name.removeprefix("gpugrad."), p.kernels) for p in paths],
                        }
                    )
    return rows


def format_what_runs_where() -> str:
    """``what_runs_where()`` as the text table ``gpugrad info --ops`` prints."""
    lines = [f"{'op':<34}{'device':<8}{'pass':<10}implementation (kernels), then the reference"]
    for row in what_runs_where():
        impl = "; ".join(f"{name} ({', '.join(kernels) or '-'})" for name, kernels in row["paths"])
        lines.append(f"{row['op']:<34}{row['kind']:<8}{row['direction']:<10}{impl}")
    plain = sorted(n for n, o in OPS.items() if not any(o.fast_paths.values()) and
                   not any(o.fast_backward_paths.values()))  # fmt: skip
    lines.append(f"reference only, on every device ({len(plain)}): {', '.join(plain)}")
    return "\n".join(lines)

"""`dvc plots` without a network: the HTML of `dvc plots show/diff` and static SVG/PNG renderings.

DVC's default page loads vega from a CDN and draws nothing offline. `.dvc/config` sets `plots.html_template` to
.dvc/plots/offline.html, which carries vega, vega-lite and vega-embed inline (versions in .dvc/plots/README.md);
`build_offline_template` makes that file from the packages' npm tarballs:

    npm pack vega@5.33.1 vega-lite@5.23.0 vega-embed@6.29.0
    python -m tmpretrain.reports.dvcplots vega-5.33.1.tgz vega-lite-5.23.0.tgz vega-embed-6.29.0.tgz

The curated plots of dvc.yaml use the template .dvc/plots/epochs.json (integer epochs, one colour per experiment,
a dotted line at the exported epoch).
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

from .runs import ReportError

OFFLINE_TEMPLATE = Path(".dvc/plots/offline.html")
# In load order: vega-lite needs vega, vega-embed needs both.
VENDORED = (
    ("vega", "build/vega.min.js"),
    ("vega-lite", "build/vega-lite.min.js"),
    ("vega-embed", "build/vega-embed.min.js"),
)

_PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
{{refresh_tag}}
<title>DVC plots</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1em; }}
body > div {{ display: inline-block; vertical-align: top; margin: 0 1em 1.5em 0; }}
</style>
{scripts}
</head>
<body>
{{plot_divs}}
</body>
</html>
"""


def _package_file(tarball: Path, member: str) -> tuple[dict, str]:
    """(package.json, the text of `member`) from an npm tarball (files live under package/)."""
    with tarfile.open(tarball, "r:gz") as tar:
        meta = json.loads(tar.extractfile("package/package.json").read())
        text = tar.extractfile(f"package/{member}").read().decode("utf-8")
    return meta, text


def build_offline_template(tarballs: list[Path]) -> tuple[str, list[dict]]:
    """DVC's HTML template with the libraries inline, and what was embedded (name, version, license, sha256).

    The page has DVC's `{plot_divs}` and `{refresh_tag}` placeholders but no `{scripts}`: DVC puts its CDN
    <script src> tags only where that placeholder is."""
    by_name = {}
    for tarball in tarballs:
        meta, _ = _package_file(Path(tarball), "package.json")
        by_name[meta["name"]] = Path(tarball)
    missing = [name for name, _ in VENDORED if name not in by_name]
    if missing:
        raise ReportError(f"no npm tarball for {', '.join(missing)} (npm pack {' '.join(missing)})")
    scripts, records = [], []
    for name, member in VENDORED:
        meta, text = _package_file(by_name[name], member)
        # The source map is not vendored: drop its reference so that a browser never asks for it.
        text = re.sub(r"\n//# sourceMappingURL=\S+\s*$", "\n", text)
        if re.search(r"</script|\{(plot_divs|refresh_tag|scripts)\}", text):
            raise ReportError(f"{name} {meta['version']}: its text cannot be inlined in the DVC template as is")
        header = f"/*! {name}@{meta['version']} ({member}) | {meta.get('license')} | https://github.com/vega/{name} */"
        scripts.append(f"<script>{header}\n{text}</script>")
        records.append(
            {
                "package": name,
                "version": meta["version"],
                "file": member,
                "license": meta.get("license"),
                "sha256_inlined": hashlib.sha256(text.encode("utf-8")).hexdigest(),
            }
        )
    return _PAGE.format(scripts="\n".join(scripts)), records


def inlined_scripts(page: str) -> list[str]:
    """The inline script texts of an HTML page (without their /*! header line)."""
    return [s.split("\n", 1)[1] for s in re.findall(r"<script>(/\*!.*?)</script>", page, flags=re.S)]


# ------------------------------------------------------------------------------------------ rendering


def dvc_plots_command(revs: list[str], out_dir: Path | str, json_output: bool = False) -> list[str]:
    """`dvc plots diff REVS` (`dvc plots show` for the workspace alone) writing its HTML to out_dir."""
    cmd = ["dvc", "plots", "diff", *revs] if revs else ["dvc", "plots", "show"]
    return cmd + (["--json"] if json_output else ["-o", str(out_dir)])


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("_") or "plot"


def _static(node) -> None:
    """Drop the widgets (smoothing slider) of DVC's templates: their params stay, as constants."""
    if isinstance(node, dict):
        node.pop("bind", None)
        for value in node.values():
            _static(value)
    elif isinstance(node, list):
        for value in node:
            _static(value)


def render_dvc_plots(revs: list[str], out_dir: Path | str, fmt: str = "svg", root: Path | str = ".") -> list[Path]:
    """`dvc plots diff --json REVS` rendered offline with vl-convert to one SVG/PNG per plot, plus an index.html
    that shows them (for documents and for pages without JavaScript)."""
    import vl_convert as vlc

    cmd = dvc_plots_command(revs, out_dir, json_output=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=root)
    if proc.returncode:
        raise ReportError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    data = json.loads(proc.stdout).get("data", {})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, body = [], []
    for plot_id, entries in data.items():
        for k, entry in enumerate(entries):
            if entry.get("type") != "vega":
                continue
            spec = entry["content"]
            _static(spec)
            name = _slug(plot_id) + (f"_{k}" if k else "")
            if fmt == "png":
                path = out_dir / f"{name}.png"
                path.write_bytes(vlc.vegalite_to_png(spec, scale=2))
                body.append(f"<h3>{html.escape(plot_id)}</h3><img src='{path.name}'>")
            else:
                path = out_dir / f"{name}.svg"
                svg = vlc.vegalite_to_svg(spec)
                path.write_text(svg, encoding="utf-8")
                body.append(f"<h3>{html.escape(plot_id)}</h3>{svg}")
            written.append(path)
    title = "dvc plots diff " + " ".join(revs or ["workspace"])
    (out_dir / "index.html").write_text(
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body style='font-family:sans-serif'><h1>{html.escape(title)}</h1>{''.join(body)}</body></html>",
        encoding="utf-8",
    )
    return written


def main(argv: list[str] | None = None) -> int:
    """Rebuild .dvc/plots/offline.html from npm tarballs and print what it embeds (for .dvc/plots/README.md)."""
    tarballs = [Path(a) for a in (sys.argv[1:] if argv is None else argv)]
    if not tarballs:
        print(__doc__)
        return 2
    page, records = build_offline_template(tarballs)
    OFFLINE_TEMPLATE.parent.mkdir(parents=True, exist_ok=True)
    OFFLINE_TEMPLATE.write_text(page, encoding="utf-8")
    print(f"{OFFLINE_TEMPLATE}: {len(page)} characters")
    for r in records:
        print(f"| {r['package']} | {r['version']} | {r['file']} | {r['license']} | {r['sha256_inlined']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

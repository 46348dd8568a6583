"""Convert a model folder whose weights exist only as pickles (.bin) to safetensors, once, so that the
studio (which loads safetensors only) can use it. For example DiT's hub weights:

    python scripts/convert_to_safetensors.py facebook/DiT-XL-2-512 --out models/DiT-XL-2-512
    UNITE_DIT=models/DiT-XL-2-512 python app.py

SOURCE is a local folder or a hub id already in the local Hugging Face cache. The pickles are read
with torch.load(weights_only=True), which builds tensors and plain containers only and refuses any
other object, and written as .safetensors beside copies of every other file (configs, tokenizers);
sharded weights keep their shards, with the index renamed. Without --out a local folder is
converted in place (the .bin files stay).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file


def resolve(source: str) -> Path:
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(source, local_files_only=True))
    except Exception as e:  # noqa: BLE001 - not a folder, not in the cache: say which
        raise SystemExit(f"{source}: no such folder, and not in the local Hugging Face cache ({e})") from None


def convert(source: Path, out: Path) -> list[Path]:
    """Write `out` as a copy of `source` with every .bin weights file as .safetensors; the files written."""
    written = []
    for src in sorted(p for p in source.rglob("*") if p.is_file()):
        dest = out / src.relative_to(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.suffix == ".bin":
            state = torch.load(src, map_location="cpu", weights_only=True)
            tensors = {k: v.detach().clone().contiguous() for k, v in state.items()}  # shared storage split
            dest = dest.with_suffix(".safetensors")
            save_file(tensors, str(dest), metadata={"format": "pt"})
            written.append(dest)
        elif src.name.endswith(".bin.index.json"):
            index = json.loads(src.read_text())
            index["weight_map"] = {k: v.replace(".bin", ".safetensors") for k, v in index["weight_map"].items()}
            dest = dest.with_name(src.name.replace(".bin.index.json", ".safetensors.index.json"))
            dest.write_text(json.dumps(index, indent=2))
            written.append(dest)
        elif src.resolve() != dest.resolve():
            shutil.copyfile(src, dest)
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", help="a model folder, or a hub id in the local Hugging Face cache")
    ap.add_argument("--out", help="the converted folder (default: the source folder itself)")
    args = ap.parse_args(argv)
    source = resolve(args.source)
    if args.out is None and not Path(args.source).expanduser().is_dir():
        ap.error("a hub id needs --out: the Hugging Face cache is not written to")
    out = Path(args.out).expanduser() if args.out else source
    written = convert(source, out)
    if not written:
        print(f"{source}: no .bin weights to convert")
        return 1
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Export a trained segmenter for deployment: folded plain convs, packed 1-bit storage, or ONNX.

    python tools/export.py runs/f4 --fold --output f4_folded.safetensors          # dense layout
    python tools/export.py runs/f4 --fold --fuse-bn --output f4_fused.safetensors # conv+BN fused (inference)
    python tools/export.py runs/f4 --pack --output f4_packed.safetensors          # parents + 1-bit masks
    python tools/export.py runs/f4 --onnx --output f4.onnx --input-size 512       # needs the [onnx] extra

A folded file loads into the dense model of the same width (its smp name is printed); a packed
file loads with ``repeatseg.load_packed(path)``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import _interrupt  # first: Ctrl-C while the rest imports exits 130, no traceback; run() ends the tool


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="train_seg.py run folder or checkpoint file")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--fold", action="store_true", help="plain convs holding the generated weights")
    what.add_argument("--pack", action="store_true", help="parents and BN as floats, f-masks as bits")
    what.add_argument("--onnx", action="store_true", help="ONNX graph of the folded model")
    parser.add_argument("--fuse-bn", action="store_true", help="with --fold: fuse conv+BN for inference")
    parser.add_argument("--output", required=True)
    parser.add_argument("--force", action="store_true",
                        help="replace --output if it exists and a repeatseg export wrote it (never any other file)")
    parser.add_argument("--input-size", type=int, default=512, help="ONNX example input side")
    parser.add_argument("--encoder", help="encoder name if the checkpoint's metadata lacks it")
    return parser


if __name__ == "__main__":  # --help and usage errors answer here, before torch and the package load
    get_args_parser().parse_args()


import repeatseg
from repeatseg.cli import fail
from repeatseg.engine import checkpoint as ckpt
from repeatseg.errors import RepeatsegError
from repeatseg.export import export_onnx, fold, pack
from repeatseg.files import TEMP_SUFFIX, WRITTEN_BY, save_weights, temp_prefix
from repeatseg.outputs import check_output_file


def main(args: argparse.Namespace) -> int:
    try:
        check_output_file(args.output, force=args.force)
        model, metadata = repeatseg.load_segmenter(args.source, args.encoder)
        ckpt.check_against_manifest(metadata["checkpoint"])
        return export(args, model, metadata)
    except RepeatsegError as error:
        return fail(error)
    except KeyboardInterrupt:
        print("interrupted (nothing was written)", file=sys.stderr)
        return 130


def export(args: argparse.Namespace, model, metadata: dict) -> int:
    model.eval()
    variant = repeatseg.get_variant(metadata["encoder"])
    keep = {k: metadata[k] for k in ("encoder", "classes", "in_channels", "options", "decoder_channels") if k in metadata}
    keep[WRITTEN_BY] = "repeatseg export"  # --force replaces only files carrying it
    output = Path(args.output)
    if args.fold:
        # The variant says what its folded model loads into (a RepeatNet model: its dense twin), if anything.
        twin = variant.folds_into.name if variant.folds_into is not None else None
        meta = dict(keep, encoder=twin or variant.name, folded_from=variant.name, fused_bn=str(args.fuse_bn))
        save_weights(output, fold(model, fuse_bn=args.fuse_bn).state_dict(), meta)
        how = (f"repeatseg.build_segmenter({twin!r}, classes=...)" if twin else
               f"repeatseg.fold(repeatseg.build_segmenter({variant.name!r}, classes=...))")
        print(f"wrote {output}: plain convs; load into {how}" + (" after fusing BN" if args.fuse_bn else ""))
    elif args.pack:
        pack(model, output, keep)
        stats = repeatseg.describe(variant.name, segmenter=True, classes=int(keep.get("classes", 21)),
                                   decoder_channels=json.loads(keep.get("decoder_channels") or "null"))
        size = output.stat().st_size
        print(f"wrote {output}: {size / 2**20:.2f} MiB (closed-form minimum {stats.packed_bytes / 2**20:.2f} MiB, "
              f"+{100 * (size / stats.packed_bytes - 1):.2f}%)")
    else:
        try:
            write_onnx(model, output, args.input_size, int(keep.get("in_channels", 3)))
        except ImportError as error:
            return fail(f"ONNX export needs the extra: pip install 'repeatseg[onnx]' ({error})")
        print(f"wrote {output}")
    return 0


def write_onnx(model, output: Path, input_size: int, in_channels: int) -> None:
    """The ONNX graph, marked as a repeatseg export, written beside ``output`` and renamed into
    place, so a kill never leaves half a file there (what it leaves aside the next export removes)."""
    import onnx

    temp = output.with_name(f"{temp_prefix(output)}onnx{TEMP_SUFFIX}")
    external = temp.with_name(temp.name + ".data")  # where the exporter may put the weights
    try:
        export_onnx(model, temp, input_size, in_channels)
        graph = onnx.load(str(temp))  # weights and all: saved back as one self-contained file
        graph.metadata_props.add(key=WRITTEN_BY, value="repeatseg export")
        onnx.save(graph, str(temp))
        temp.replace(output)
    finally:
        temp.unlink(missing_ok=True)
        external.unlink(missing_ok=True)


if __name__ == "__main__":
    _interrupt.run(main, get_args_parser())

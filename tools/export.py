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

import repeatseg
from repeatseg.cli import fail
from repeatseg.engine import checkpoint as ckpt
from repeatseg.export import export_onnx, fold, pack
from repeatseg.files import save_weights


def check_output(output: Path, checkpoint: Path) -> None:
    """Refuse an --output that is a folder, or that would replace a run's checkpoint files."""
    if output.is_dir():
        raise ValueError(f"--output {output} is a folder; give a file name")
    if output.resolve() == checkpoint.resolve() or (output.parent / "last.state.pt").exists():
        raise ValueError(f"--output {output} would overwrite a run's checkpoints ({checkpoint.parent}); "
                         "write the export elsewhere")


def main(args: argparse.Namespace) -> int:
    try:
        model, metadata = repeatseg.load_segmenter(args.source, args.encoder)
        ckpt.check_against_manifest(metadata["checkpoint"])
        check_output(Path(args.output), Path(metadata["checkpoint"]))
        return export(args, model, metadata)
    except (ValueError, RuntimeError, OSError) as error:
        return fail(error)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def export(args: argparse.Namespace, model, metadata: dict) -> int:
    model.eval()
    variant = repeatseg.get_variant(metadata["encoder"])
    keep = {k: metadata[k] for k in ("encoder", "classes", "in_channels", "options", "decoder_channels") if k in metadata}
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
            export_onnx(model, output, args.input_size, int(keep.get("in_channels", 3)))
        except ImportError as error:
            return fail(f"ONNX export needs the extra: pip install 'repeatseg[onnx]' ({error})")
        print(f"wrote {output}")
    return 0


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="train_seg.py run folder or checkpoint file")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--fold", action="store_true", help="plain convs holding the generated weights")
    what.add_argument("--pack", action="store_true", help="parents and BN as floats, f-masks as bits")
    what.add_argument("--onnx", action="store_true", help="ONNX graph of the folded model")
    parser.add_argument("--fuse-bn", action="store_true", help="with --fold: fuse conv+BN for inference")
    parser.add_argument("--output", required=True)
    parser.add_argument("--input-size", type=int, default=512, help="ONNX example input side")
    parser.add_argument("--encoder", help="encoder name if the checkpoint's metadata lacks it")
    return parser


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))

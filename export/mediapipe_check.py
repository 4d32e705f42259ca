"""Load exported models in MediaPipe Tasks' ImageClassifier: the C++ core that Android and iOS apps run.

Run it with a Python that has `mediapipe` installed (a separate venv: mediapipe pins its own OpenCV):

    python export/mediapipe_check.py out/fer_res_l_int8_rgb.tflite [--face face.npy] [--json]

It needs only mediapipe and numpy, never this package, so it can run anywhere MediaPipe installs. For
each model it prints whether ImageClassifier accepts it (it reads the TFLite metadata: colour space,
normalization, labels.txt) and the scores it gives a face; `--face` takes a uint8 48x48 .npy array.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def classify(model_path: str, faces: np.ndarray) -> dict:
    """The first face's scores and every face's top label; `faces` is (48, 48) or (N, 48, 48) uint8."""
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    faces = faces[None] if faces.ndim == 2 else faces
    results = []
    try:
        options = vision.ImageClassifierOptions(
            base_options=BaseOptions(model_asset_path=model_path), max_results=-1
        )
        with vision.ImageClassifier.create_from_options(options) as classifier:
            for face in faces:
                rgb = np.ascontiguousarray(np.repeat(face[..., None], 3, axis=-1))
                results.append(classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb)))
    except (ValueError, RuntimeError) as e:
        return {"ok": False, "error": str(e).splitlines()[0]}
    scores = [{c.category_name: float(c.score) for c in r.classifications[0].categories} for r in results]
    return {"ok": True, "scores": scores[0], "labels": [max(s, key=s.get) for s in scores]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help=".tflite files")
    parser.add_argument(
        "--face", help="uint8 48x48 gray face, or (N, 48, 48) faces, as .npy (default: a mid-gray square)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    face = np.load(args.face).astype(np.uint8) if args.face else np.full((48, 48), 128, np.uint8)
    results = {path: classify(path, face) for path in args.models}
    if args.json:
        print(json.dumps(results))
    else:
        for path, r in results.items():
            if r["ok"]:
                top = max(r["scores"], key=r["scores"].get)
                print(f"ok    {path}: top {top} ({r['scores'][top]:.3f})")
            else:
                print(f"FAIL  {path}: {r['error']}")
    return 0 if all(r["ok"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

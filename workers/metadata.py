"""Metadata files written beside a finished dataset: ``croissant.json`` and the dataset card ``README.md``.

* ``croissant.json`` -- MLCommons Croissant 1.0 (JSON-LD, metadata only): the dataset's name,
  description, license, version, and every file with its size and sha256 (``FileObject``);
  the HDF5 shards also as one ``FileSet`` per split.  ``mlcroissant validate`` accepts it.
* ``README.md`` -- a Hugging Face dataset card whose YAML header declares the splits
  (``data/{train,valid,test}/*.h5``) and the features of every per-sample array, so
  ``datasets.load_dataset("<folder>")`` loads the shards with no arguments (the per-dataset
  coordinate arrays, which have another first dimension, are not features).
"""

from __future__ import annotations

import json

from pdeforge import __version__

from . import keys

_HF_SPLITS = {"train": "train", "valid": "validation", "test": "test"}
_HF_DTYPES = {"float32": "float32", "float64": "float64", "complex64": "float32", "complex128": "float64"}


def _array_feature(shape: list[int], dtype: str) -> dict:
    """A Hugging Face ``ArrayND`` feature (N = len(shape), 1 <= N <= 5) or a list for N = 1."""
    if len(shape) == 1:
        return {"list": _HF_DTYPES.get(dtype, dtype), "length": shape[0]}
    return {f"array{len(shape)}_d": {"shape": list(shape), "dtype": _HF_DTYPES.get(dtype, dtype)}}


def _feature(name: str, shape: list[int], dtype: str) -> dict:
    if dtype.startswith("complex"):  # HF reads HDF5 complex as a struct of real and imaginary parts
        return {"name": name, "struct": [{"name": part, "dtype": _array_feature(shape, dtype)}
                                         for part in ("real", "imag")]}
    return {"name": name, "dtype": _array_feature(shape, dtype)}


def hf_features(x: dict, y: dict, scalars: list[str], extras: dict[str, list[int]], precision: str,
                trajectory: bool = False) -> list[dict]:
    """The card's ``features``: x, y, sample_index, scalars/, inputs/, solver/ (per-sample arrays; trajectories
    add steps, time_error_estimate and operators)."""
    features = [_feature("x", x["shape"][1:], x["dtype"]), _feature("y", y["shape"][1:], y["dtype"]),
                {"name": "sample_index", "dtype": "int64"}]
    if scalars:
        features.append({"name": "scalars", "struct": [{"name": s, "dtype": "float64"} for s in scalars]})
    if extras:
        features.append({"name": "inputs", "struct": [_feature(k, shape, precision) for k, shape in extras.items()]})
    solver = [("converged", "bool"), ("engine", "string"), ("fallback", "bool"), ("iterations", "int64"),
              ("matvecs", "int64"), ("residual", "float64"), ("residual_stored", "float64"), ("seconds", "float64")]
    if trajectory:
        solver += [("steps", "int64"), ("time_error_estimate", "float64"), ("operators", "int64")]
        solver.sort()
    features.append({"name": "solver", "struct": [{"name": k, "dtype": t} for k, t in solver]})
    return features


def _yaml(value, indent: int = 0) -> str:
    """Block YAML for the nested lists/dicts/scalars of a card header (no YAML library needed)."""
    pad = " " * indent
    if isinstance(value, dict):
        lines = []
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v and not _flow(v):
                lines.append(f"{pad}{k}:\n{_yaml(v, indent + 2)}")
            else:
                lines.append(f"{pad}{k}: {_scalar(v)}")
        return "\n".join(lines)
    lines = []
    for item in value:
        body = _yaml(item, indent + 2) if isinstance(item, (dict, list)) else f"{pad}  {_scalar(item)}"
        lines.append(f"{pad}- {body.lstrip()}")
    return "\n".join(lines)


def _flow(v) -> bool:
    return isinstance(v, list) and all(isinstance(i, (int, float)) for i in v)


def _scalar(v) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(_scalar(i) for i in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v))


def _configs(manifest: dict, splits: list[str]) -> list[dict]:
    """One ``datasets`` config (the finest resolution is the default), or one per resolution of a
    paired dataset (``r64``, ``r128``, ...)."""
    resolutions = manifest.get("resolutions")
    if not resolutions:
        return [{"config_name": "default",
                 "data_files": [{"split": _HF_SPLITS[s], "path": f"data/{s}/*.h5"} for s in splits]}]
    return [{"config_name": f"r{n}", **({"default": True} if n == resolutions[-1] else {}),
             "data_files": [{"split": _HF_SPLITS[s], "path": f"data/{s}/r{n}/*.h5"} for s in splits]}
            for n in resolutions]


def dataset_card(manifest: dict, features: dict[int, list[dict]], description: str) -> str:
    """The Hugging Face dataset card (``README.md``) of a finished dataset; ``features`` per resolution."""
    splits = [s for s in keys.SPLITS if manifest["splits"][s]["shards"]]
    info = [{"config_name": f"r{n}", "features": f} for n, f in features.items()] if manifest.get("resolutions") \
        else {"features": next(iter(features.values()))}
    header = {
        "license": "cc-by-4.0",
        "tags": ["pde", "neural-operator", "pdeforge", manifest["family"]],
        "configs": _configs(manifest, splits),
        "dataset_info": info,
    }
    spec = json.dumps(manifest["spec"], indent=2, sort_keys=True)
    counts = ", ".join(f"{s} {manifest['splits'][s]['samples']}" for s in splits)
    return (f"---\n{_yaml(header)}\n---\n\n# PDEForge dataset {manifest['dataset_id']}: {manifest['family']}\n\n"
            f"{description}\n\n"
            f"* samples: {manifest['samples']} ({counts})\n"
            f"* grid: {' x '.join(map(str, manifest['grid']))}, {manifest.get('grid_type', 'cell-centred')}\n"
            + (f"* resolutions: {', '.join(map(str, manifest['resolutions']))} cells per axis -- every sample at "
               "each (one continuum instance, point values at the cell centres), in `data/<split>/r<n>/`\n"
               if manifest.get("resolutions") else "")
            + f"* sampling version: {manifest.get('sampling', 1)}\n"
            f"* x channels: {', '.join(manifest['input_names'])}; y channels: {', '.join(manifest['output_names'])}\n"
            f"* boundary conditions: {manifest['boundary_conditions']}\n"
            f"* claims: {manifest['claims']}\n"
            f"* order: samples are stored in solve order (similar samples together): shuffle before training.\n\n"
            "Load it with PyTorch (`pip install pdeforge[torch]`):\n\n"
            "```python\nfrom pdeforge import PDEDataset\n"
            "train = PDEDataset(\".\", split=\"train\", normalize=True)\n```\n\n"
            "or with Hugging Face `datasets.load_dataset(\".\")`, or any HDF5 reader (see the shard layout in the "
            "PDEForge README).\n\n"
            f"## Spec\n\n```json\n{spec}\n```\n\nGenerated by PDEForge {__version__}.\n")


def croissant(manifest: dict, files: list[dict], description: str) -> dict:
    """Croissant 1.0 metadata of a finished dataset (every file with its sha256)."""
    objects = []
    for f in files:
        fmt = "application/x-hdf5" if f["path"].endswith(".h5") else (
            "text/markdown" if f["path"].endswith(".md") else "application/json")
        objects.append({"@type": "cr:FileObject", "@id": f["path"], "name": f["path"], "contentUrl": f["path"],
                        "contentSize": f"{f['bytes']} B", "encodingFormat": fmt, "sha256": f["sha256"]})
    for split in keys.SPLITS:
        if not manifest["splits"][split]["shards"]:
            continue
        for n in manifest.get("resolutions") or [None]:
            name = f"shards-{split}" if n is None else f"shards-{split}-r{n}"
            objects.append({"@type": "cr:FileSet", "@id": name, "name": name,
                            "description": f"the {split} split's HDF5 shards" + ("" if n is None else f" at {n} cells "
                                                                                 "per axis"),
                            "encodingFormat": "application/x-hdf5",
                            "includes": f"data/{split}/*.h5" if n is None else f"data/{split}/r{n}/*.h5"})
    return {
        "@context": {
            "@language": "en", "@vocab": "https://schema.org/", "sc": "https://schema.org/",
            "cr": "http://mlcommons.org/croissant/", "dct": "http://purl.org/dc/terms/",
            "data": {"@id": "cr:data", "@type": "@json"}, "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
            "examples": {"@id": "cr:examples", "@type": "@json"}, "extract": "cr:extract", "field": "cr:field",
            "fileProperty": "cr:fileProperty", "fileObject": "cr:fileObject", "fileSet": "cr:fileSet",
            "format": "cr:format", "includes": "cr:includes", "isLiveDataset": "cr:isLiveDataset",
            "jsonPath": "cr:jsonPath", "key": "cr:key", "md5": "cr:md5", "parentField": "cr:parentField",
            "path": "cr:path", "recordSet": "cr:recordSet", "references": "cr:references", "regex": "cr:regex",
            "repeated": "cr:repeated", "replace": "cr:replace", "separator": "cr:separator", "source": "cr:source",
            "subField": "cr:subField", "transform": "cr:transform", "conformsTo": "dct:conformsTo",
            "citeAs": "cr:citeAs", "column": "cr:column", "equivalentProperty": "cr:equivalentProperty",
            "rai": "http://mlcommons.org/croissant/RAI/", "samplingRate": "cr:samplingRate",
        },
        "@type": "sc:Dataset",
        "conformsTo": "http://mlcommons.org/croissant/1.0",
        "name": f"pdeforge-{manifest['family']}-{manifest['dataset_id']}",
        "description": description,
        "license": "https://creativecommons.org/licenses/by/4.0/",
        "url": f"https://pdeforge.invalid/datasets/{manifest['dataset_id']}",
        "version": f"{manifest['format_version']}.0.0",
        "datePublished": manifest["created"][:10],
        "creator": {"@type": "sc:Organization", "name": "PDEForge"},
        "citeAs": f"PDEForge dataset {manifest['dataset_id']} (spec in spec.json)",
        "keywords": ["PDE", "neural operator", manifest["family"]],
        "distribution": objects,
    }


def description(manifest: dict) -> str:
    return (f"{manifest['samples']} samples of the {manifest['family']} family ({manifest['summary']}) on a "
            f"{' x '.join(map(str, manifest['grid']))} grid, each solved and verified by PDEForge "
            f"(true residual recomputed after the solve).")

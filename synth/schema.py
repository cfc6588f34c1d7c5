"""The config read from its files and checked against its JSON schema, with messages that name
the key at fault.

A config file may name the config it builds on (``extends: config.yaml``) and hold only what it
changes: `load_config_file` lays it on that base, and `merge_config_files` merges several files
as Snakemake's ``--configfile a.yaml b.yaml`` does, each on its own base; `config_with_origins`
also says which file set each key, for messages that end ``; from mine.yaml``.

Snakemake's ``validate`` stops at the first problem and prints the whole schema after it (2000
lines for a top-level typo). The workflow first runs `config_problems` and stops with one line
per problem, each naming the key by its dotted path, and for an unknown key the closest valid
one (or, when none is close, all of them)::

    invalid config (2 problems):
      experiments.hanzi_cnn.train.stepz: unknown key (did you mean 'steps'?)
      tasks.hanzi.splits.train.samples: -3 is less than the minimum of 1

Then ``validate`` fills in the schema's defaults (`with_defaults` does the same outside the
workflow, for ``python -m models.train --config``), and the keys that hold a path (those the
schema marks ``x-path``) get their ``~`` and ``$VARS`` expanded, as ``extends`` does; a variable
that is not set is a problem naming the key and the variable (`path_problem`).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import yaml

# The workflow's schema: workflow/schemas/config.schema.yaml, beside the rules that validate with
# it; synth/config.schema.yaml links to it, so that an installed wheel (which holds no workflow/)
# carries a copy as package data.
SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")


def load_schema(path: str | os.PathLike) -> dict[str, Any]:
    """The schema file (YAML)."""
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, but a key given twice in one mapping is an error (PyYAML keeps the
    last silently: a second ``experiments:`` block would drop the first's experiments)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # a merge key (<<: *base): flattened by the base class, and may repeat
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, list | dict):
                continue  # unhashable: the base class reports it
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found the key {key!r} twice (first on line {seen[key].line + 1}): the "
                    "second would silently replace the first",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def _where(path: list[Any]) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _unknown_keys(error: jsonschema.ValidationError) -> list[tuple[str, list[Any]]]:
    """An ``additionalProperties`` error as one line per unknown key, with the valid ones, and
    the key's path."""
    known = sorted((error.schema.get("properties") or {}).keys())
    lines = []
    for key in sorted(set(error.instance) - set(known), key=str):
        path = [*error.absolute_path, key]
        close = difflib.get_close_matches(str(key), known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"valid: {', '.join(known)}"
        lines.append((f"{_where(path)}: unknown key ({hint})", path))
    return lines


def _ordered(validator: Any, ordered: bool, instance: Any, schema: Any) -> Iterator[Any]:
    """The schema's own keyword ``ordered``: a ``[low, high]`` pair with low <= high (a reversed
    range passes JSON Schema, then fails deep in numpy when the first shard is drawn)."""
    if (
        ordered
        and validator.is_type(instance, "array")
        and len(instance) == 2
        and all(validator.is_type(x, "number") for x in instance)
        and instance[0] > instance[1]
    ):
        yield jsonschema.ValidationError(f"{list(instance)}: low is above high (give [low, high])")


def _path(validator: Any, marked: bool, instance: Any, schema: Any) -> Iterator[Any]:
    """The schema's own keyword ``x-path``: a key that holds a filesystem path (a font, a charset
    or corpus file, a checkpoint), whose ``~`` and ``$VARS`` `check_schema` expands
    (`expand_path`). One it cannot expand is an error naming the variable: left as written, the
    path named a file ``$FONT_DIR/x.ttf`` in the working folder, a glob of which matched nothing
    (a warning) and a run drew without those fonts."""
    if marked and isinstance(instance, str) and (problem := path_problem(instance)):
        yield jsonschema.ValidationError(problem)


def _is_integer(checker: Any, instance: Any) -> bool:
    """``type: integer`` is an int (not a bool): JSON Schema's own also takes a float with
    nothing after its point (``2.0``), which then fails deep in the job that counts with it
    (``range``, ``islice``), naming no key."""
    return isinstance(instance, int) and not isinstance(instance, bool)


_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    {"ordered": _ordered, "x-path": _path},
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer),
)


def _misspelt(error: jsonschema.ValidationError, config: Mapping[str, Any]) -> str:
    """For an experiment without its ``task`` or ``model``, most often an overlay's typo for an
    experiment of the config it extends: the experiment its name is close to."""
    path = list(error.absolute_path)
    if error.validator != "required" or len(path) != 2 or path[0] != "experiments":
        return ""
    others = [str(name) for name in config.get("experiments") or {} if name != path[1]]
    close = difflib.get_close_matches(str(path[1]), others, n=1)
    return f" (a new experiment; did you mean {close[0]!r}?)" if close else ""


def _valid_forms(error: jsonschema.ValidationError) -> str:
    """For a value a key's ``pattern`` refuses, the forms it takes in words (the schema's
    ``x-valid``), not the regular expression; empty for other errors."""
    valid = error.schema.get("x-valid") if isinstance(error.schema, Mapping) else None
    if error.validator != "pattern" or not valid:
        return ""
    return f"{error.instance!r} is not {valid}"


def _number_as_text(error: jsonschema.ValidationError) -> str:
    """For a number YAML read as text: YAML 1.1 (PyYAML, Snakemake) reads ``1e-3`` as a string,
    and ``1.0e-3`` (a dot, a signed exponent) as a number; and for a count written with a
    point (``2.0``)."""
    if error.validator != "type":
        return ""
    wanted = error.validator_value
    wants_integer = wanted == "integer" or (isinstance(wanted, list) and "integer" in wanted)
    count = isinstance(error.instance, float) and abs(error.instance) < 2**53
    if count and wants_integer and error.instance.is_integer():
        return f" (write {int(error.instance)}, without a point)"
    if not isinstance(error.instance, str):
        return ""
    try:
        value = float(error.instance)
    except ValueError:
        return ""
    if wants_integer and value.is_integer():
        return f" (YAML reads {error.instance} as text, not a number: write {int(value)})"
    mantissa, _, exponent = error.instance.lower().partition("e")
    shown = repr(value)
    if exponent:
        mantissa = mantissa if "." in mantissa else f"{mantissa}.0"
        sign = "" if exponent[0] in "+-" else "+"
        shown += f" or {mantissa}e{sign}{exponent}"
    return f" (YAML reads {error.instance} as text, not a number: write {shown})"


def config_problems(
    config: Mapping[str, Any], schema: Mapping[str, Any], origins: Mapping[str, Any] | None = None
) -> list[str]:
    """Every way ``config`` breaks ``schema``, one line each, in key order (empty: valid).

    ``origins`` (`config_with_origins`): when the config merged from several files, each line
    ends with the file(s) that set the key at fault (``; from mine.yaml``)."""
    return [_with_files(line, path, origins) for line, path in _problems_at(config, schema)]


def _with_files(line: str, path: list[Any], origins: Mapping[str, Any] | None) -> str:
    """A problem's line ended with the files that set its key (`from_files`). A number read as
    text there came from Snakemake's ``--config`` when that names it: below the top level
    ``--config`` reads every value as text, so the YAML hint would not help."""
    files = from_files(origins, path)
    if len(path) > 1 and files.endswith("--config") and " (YAML reads " in line:
        line = line[: line.index(" (YAML reads ")] + (
            " (--config reads every value below the top level as text: set this one in a "
            "--configfile)"
        )
    return line + files


def _problems_at(
    config: Mapping[str, Any], schema: Mapping[str, Any], environment: bool = True
) -> list[tuple[str, list]]:
    """`config_problems`' lines (without the files), each with the path of its key; without
    ``environment``, none about a path this environment cannot expand (`check_schema`)."""
    validator = _Validator(schema, format_checker=_Validator.FORMAT_CHECKER)  # regexes compile
    # A NaN passes every bound (each comparison with it is false) and an infinity passes a
    # minimum: both are said here, once, and the schema's other words about them left out.
    not_finite = list(_not_finite(config, []))
    lines = [(f"{_where(path)}: {_not_finite_why(value)}", path) for value, path in not_finite]
    for error in validator.iter_errors(config):
        path = list(error.absolute_path)
        if any(path == at for _, at in not_finite):
            continue
        if error.validator == "x-path" and not environment:
            continue
        if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
            lines.extend(_unknown_keys(error))
        else:
            message = _valid_forms(error) or error.message
            message = f"{message}{_misspelt(error, config)}{_number_as_text(error)}"
            # a key's name refused (propertyNames): the file that set that key, not the block's
            named = "propertyNames" in error.schema_path and isinstance(error.instance, str)
            lines.append((f"{_where(path)}: {message}", [*path, error.instance] if named else path))
    lines.sort(key=lambda line: [str(p) for p in line[1]])
    return lines


def _not_finite(value: Any, path: list[Any]) -> Iterator[tuple[float, list[Any]]]:
    """Every NaN or infinity in ``value`` (YAML's ``.nan``, ``.inf``), with its key's path: no
    key takes one, and the schema cannot tell (NaN is a number, above every minimum)."""
    if isinstance(value, float) and not math.isfinite(value):
        yield value, path
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _not_finite(item, [*path, key])
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _not_finite(item, [*path, i])


def _not_finite_why(value: float) -> str:
    return "nan is not a number" if math.isnan(value) else f"{value} is not a finite number"


def named_with_file(message: str, origins: Mapping[str, Any] | None) -> str:
    """A message that starts with the key at fault (``experiments.x.model_kwargs.widht: ...``,
    as the checks past the schema write them), ended with the file that set it (`from_files`).
    A key of fewer than three parts (``experiments.x: model ... but tasks.line.height is 48``)
    is a clash between keys that the message names itself, and is left as it is."""
    key = message.split(":", 1)[0]
    path = key.split(".")
    if " " in key or "\n" in key or len(path) < 3:
        return message
    return message + from_files(origins, path)


def with_config_file(message: str, paths: Sequence[str]) -> str:
    """A problem with the config files ``paths`` (the command line's, in order), starting with
    the file at fault: as the message names it (a file that cannot be read names itself; a key
    set by one of several merged files ends ``; from FILE``), else the files given."""
    written = {str(p) for p in paths} | {str(Path(p)) for p in paths}  # ./x.yaml or x.yaml
    named = message.startswith(tuple(written)) or "; from " in message
    return message if named else f"{' '.join(str(p) for p in paths)}: {message}"


def from_files(origins: Mapping[str, Any] | None, path: Sequence[Any]) -> str:
    """``"; from FILE"``: the file(s) that set the key at ``path`` (`config_with_origins`), for
    the end of a message about it; empty when the config came from one file (or ``origins`` is
    None), or the key from none (a default)."""
    if origins is None or len(_sources(origins, [])) < 2:
        return ""
    sources = _sources(origins, path)
    return f"; from {', '.join(sources)}" if sources else ""


def merge_config(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` laid on ``base``, as Snakemake merges several ``--configfile`` files: mappings
    merge key by key, recursively; anything else (a number, a string, a list) replaces.

    The rule of ``snakemake.utils.update_config``, which is not called: it changes the base's
    nested mappings in place, and ``models.train`` and the benchmarks read configs without
    importing the workflow engine."""
    merged = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_config(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """A config file, with the file its ``extends`` names laid under it.

    An overlay such as ``configs/lines_cpu.yaml`` holds only what it changes::

        extends: config.yaml
        experiments:
          line_crnn_vgg:
            train: {steps: 10000}

    and reads as ``config.yaml`` with those keys replaced (`merge_config`). The path is relative
    to the file's folder (a symlink's target's), ``~`` and ``$VARS`` expanded. A base may extend
    another in turn. Nothing can be taken out of a base: a key set to null is null.

    Raises:
        ValueError: the file cannot be read, is empty or is not a mapping, or ``extends`` names
            no file or a file already in the chain; the message names the file and the key.
    """
    return _load(Path(path))[0]


def _load(path: Path, chain: tuple[Path, ...] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
    """`load_config_file`, and its origins: the config's shape with each value replaced by the
    file that set it (`_origins`)."""
    try:
        config = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except IsADirectoryError as e:
        raise ValueError(f"{path}: is a folder, not a config file") from e
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ValueError(f"{path}: cannot read the config: {e}") from e
    if config is None:
        raise ValueError(f"{path}: the config file is empty")
    if not isinstance(config, Mapping):
        raise ValueError(f"{path}: a config is a mapping of keys, not {type(config).__name__}")
    loop = _recursive_key(config, ())
    if loop is not None:
        raise ValueError(
            f"{path}: {_where(list(loop)) or 'the file'}: a YAML alias (*name) refers to a "
            "mapping or list that holds it, so the value would hold itself without end"
        )
    return _with_base(config, path, chain)


def _recursive_key(value: Any, holders: tuple[int, ...], path: tuple[Any, ...] = ()) -> Any:
    """The path of the first value that holds itself (YAML's ``x: &x {b: *x}``), or None. An
    anchor used twice side by side (``*strokes_legible`` in configs/config.yaml) is no loop."""
    if not isinstance(value, dict | list):
        return None
    if id(value) in holders:
        return path
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        found = _recursive_key(item, (*holders, id(value)), (*path, key))
        if found is not None:
            return found
    return None


def _with_base(
    config: Mapping[str, Any], path: Path, chain: tuple[Path, ...]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``config`` (read from ``path``) over the config its ``extends`` names, if any, and the
    origins of the result."""
    own = {k: v for k, v in config.items() if k != "extends"}
    if "extends" not in config:
        return dict(config), _origins(own, _shown(path))
    extends = config["extends"]
    if not isinstance(extends, str) or not extends.strip():
        raise ValueError(f"{path}: extends: {extends!r}: give the path of a config file")
    here = path.resolve()
    base_path = (here.parent / expand_path(extends)).resolve()
    if base_path in (*chain, here):
        loop = " -> ".join(str(p) for p in (*chain, here, base_path))
        raise ValueError(f"{path}: extends: {extends}: the configs extend each other: {loop}")
    if base_path.is_dir():
        raise ValueError(f"{path}: extends: {extends}: {base_path} is a folder, not a config file")
    if not base_path.is_file():
        unset = ", ".join(f"${name}" for name in _unset_variables(extends))
        why = f"; not set in the environment: {unset}" if unset else ""
        raise ValueError(f"{path}: extends: {extends}: no such file ({base_path}){why}")
    base, base_origins = _load(base_path, (*chain, here))
    return merge_config(base, own), _merge_origins(base_origins, _origins(own, _shown(path)))


def expand_path(path: str) -> str:
    """A path as a config file gives it, with a leading ``~`` (or ``~user``) and each ``$NAME``
    or ``${NAME}`` expanded as a shell expands them (`os.path.expanduser`, then
    `os.path.expandvars`): ``extends`` and the keys the schema marks ``x-path``. A variable that
    is not set, or a user who is not known, is left as written (`path_problem` says so)."""
    return os.path.expandvars(os.path.expanduser(path))


def path_problem(path: str) -> str | None:
    """Why `expand_path` cannot expand ``path`` in full, naming what is missing: the environment
    variables it names that are not set, the ``~user`` whose home folder is not known, or a
    variable whose value starts with a ``~`` that stays as written; None when it can (or there
    is nothing to expand)."""
    unset = _unset_variables(path)
    if unset:
        names = ", ".join(f"${name}" for name in unset)
        return (
            f"{path}: {names} {'is' if len(unset) == 1 else 'are'} not set in the environment "
            "(a path's ~ and $VARS are expanded: set it, or write the path out)"
        )
    if path.startswith("~") and os.path.expanduser(path) == path:
        user = path[1:].split("/", 1)[0]
        whose = f"no user {user!r} is known" if user else "HOME is not set"
        return f"{path}: ~{user} cannot be expanded: {whose}"
    expanded = expand_path(path)
    if expanded.startswith("~") and not path.startswith("~"):
        # FONT_DIR="~/fonts" (quoted, a shell keeps the ~): as in a shell, a variable's ~ is not
        # expanded, and a glob under it would match nothing (a warning) and a run draw without it
        return (
            f"{path}: expands to {expanded}, whose ~ a variable's value leaves unexpanded (as a "
            "shell does): set the variable to the path written out"
        )
    return None


def _path_found(validator: Any, marked: bool, instance: Any, schema: Any) -> Iterator[Any]:
    """``x-path`` for `expand_paths`: a marker at each path `expand_path` changes in full (one
    it expands in part, `path_problem`, stays as the schema check's message shows it)."""
    if (
        marked
        and isinstance(instance, str)
        and expand_path(instance) != instance
        and path_problem(instance) is None
    ):
        yield jsonschema.ValidationError("a path to expand")


# Walks the config as the schema does ($ref, items, additionalProperties), to find its paths
_PathFinder = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"x-path": _path_found})


def expand_paths(config: dict[str, Any], schema: Mapping[str, Any]) -> None:
    """Expand ``~`` and ``$VARS`` (`expand_path`) in place in every value of ``config`` at a key
    that ``schema`` marks ``x-path`` (``fonts.paths``, ``train.init_from``, ...), so that the
    jobs read, and Snakemake takes as inputs, the files the user meant; a path without either
    is left as it is, and so is one `path_problem` finds fault with (the schema check names
    it)."""
    found = [
        list(error.absolute_path)
        for error in _PathFinder(schema).iter_errors(config)
        if error.validator == "x-path"
    ]
    for path in found:
        node: Any = config
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = expand_path(node[path[-1]])


def _unset_variables(text: str) -> list[str]:
    """The environment variables ``text`` names (``$NAME`` or ``${NAME}``, as `os.path.expandvars`
    reads them) that are not set: expandvars leaves those as written."""
    # expandvars' own pattern is ASCII: ``$HOME字体`` names $HOME, ``价$元`` no variable at all
    names = re.findall(r"\$(?:\{([^}]+)\}|(\w+))", text, re.ASCII)
    unset = [braced or bare for braced, bare in names if (braced or bare) not in os.environ]
    return list(dict.fromkeys(unset))


# An empty mapping's file, in an origins tree (the key a config cannot hold: YAML may give None)
_EMPTY = "\x00"


def _origins(config: Mapping[str, Any], source: str) -> dict[str, Any]:
    """``config``'s shape with every value that is not a mapping replaced by ``source``, and an
    empty mapping's source under the key `_EMPTY`: merged as the configs merge
    (`_merge_origins`), such trees say which file set each key."""
    return {
        k: (_origins(v, source) if v else {_EMPTY: source}) if isinstance(v, Mapping) else source
        for k, v in config.items()
    }


def _merge_origins(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`merge_config` for origins trees: as there, except that an empty mapping laid on a key
    the base already has changes nothing, so its file is not one that set the key."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            if set(value) != {_EMPTY}:
                merged[key] = _merge_origins(merged[key], value)
        else:
            merged[key] = value
    return merged


def _shown(path: Path) -> str:
    """A config file's path as messages name it: relative to the working folder when it is in
    it (Snakemake hands its --configfile paths over absolute), else as it is."""
    try:
        return str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _sources(origins: Any, path: Sequence[Any]) -> list[str]:
    """The files that set the key at ``path``, or the keys under it, each once, in key order
    (none: the key is a default, or missing)."""
    node = origins
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            break
        node = node[key]
    if isinstance(node, str):
        return [node]
    return list(dict.fromkeys(_leaves(node))) if isinstance(node, Mapping) else []


def _leaves(tree: Mapping[str, Any]) -> Iterator[Any]:
    for value in tree.values():
        if isinstance(value, Mapping):
            yield from _leaves(value)
        else:
            yield value


def merge_config_files(
    configfiles: Sequence[str | os.PathLike], overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Several config files as one: each laid on the config it extends (`load_config_file`),
    then each laid on the ones before it, as Snakemake merges ``--configfile a.yaml b.yaml``;
    ``overrides`` (Snakemake's ``--config``) last.

    Raises:
        ValueError: as `load_config_file`, or ``overrides`` sets ``extends``.
    """
    return config_with_origins(configfiles, overrides)[0]


def config_with_origins(
    configfiles: Sequence[str | os.PathLike], overrides: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """`merge_config_files`, and which file set each key: the config's shape with every value
    replaced by the path of the file it came from (`_shown`: relative to the working folder
    when in it; a base by its resolved path), or ``--config``. `check_config` names them in
    its messages (`from_files`), when there are several.

    Raises:
        ValueError: as `merge_config_files`.
    """
    if overrides and "extends" in overrides:
        raise ValueError("extends: give it in a config file, not with --config")
    merged: dict[str, Any] = {}
    origins: dict[str, Any] = {}
    for file in configfiles:
        config, config_origins = _load(Path(file))
        merged = merge_config(merged, config)
        origins = _merge_origins(origins, config_origins)
    overrides = overrides or {}
    return merge_config(merged, overrides), _merge_origins(origins, _origins(overrides, "--config"))


def renamed_models(config: Mapping[str, Any], origins: Mapping[str, Any]) -> list[str]:
    """A warning for each experiment whose ``model`` one file (or ``--config``) sets over an
    experiment another file defines (its ``task`` set there): an overlay that reuses a shipped
    experiment's name for a model of its own keeps that experiment's other settings, and its
    results take the old model's name in every report."""
    out = []
    for name, exp in sorted((origins.get("experiments") or {}).items()):
        if not isinstance(exp, Mapping) or exp.get("model") in (None, exp.get("task")):
            continue
        model_file, defined = exp["model"], exp.get("task")
        if not isinstance(model_file, str) or not isinstance(defined, str):
            continue
        model = config["experiments"][name]["model"]
        if _model_in(defined, name) == model:  # set again as it was: nothing replaced
            continue
        inherited = sorted(
            k
            for k, v in exp.items()
            if k not in ("model", _EMPTY)
            and model_file not in (set(_leaves(v)) if isinstance(v, Mapping) else {v})
        )
        out.append(
            f"experiments.{name}.model: {model} ({model_file}) "
            f"replaces the model of the experiment {defined} defines, whose other settings "
            f"({', '.join(inherited)}) it keeps; its model, metrics and report rows keep the "
            f"name {name}. A model of your own reads more clearly under a new experiment name."
        )
    return out


def _model_in(path: str, experiment: str) -> Any:
    """The ``model`` that config file ``path`` itself gives ``experiment`` (None when it gives
    none or cannot be read)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
        return data["experiments"][experiment]["model"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None


def problems_error(problems: Sequence[str], files: Sequence[str | os.PathLike] = ()) -> ValueError:
    """The error that lists ``problems`` (one line each) under ``invalid config (N problems):``,
    whether they are the schema's or those of the checks past it. ``files``, the config files
    (the workflow's, which Snakemake hands over absolute), start the heading as
    ``python -m models.configcheck FILE...`` starts it (``mine.yaml: invalid config ...``):
    a line names its key's file only when several files set keys."""
    count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
    named = f"{' '.join(_shown(Path(f)) for f in files)}: " if files else ""
    return ValueError(f"{named}invalid config ({count}):\n  " + "\n  ".join(problems))


def check_config(
    config: Mapping[str, Any],
    schema_path: str | os.PathLike = SCHEMA_PATH,
    origins: Mapping[str, Any] | None = None,
) -> None:
    """Raise `ValueError` listing every problem of ``config`` (see `config_problems`)."""
    problems = config_problems(config, load_schema(schema_path), origins)
    if problems:
        raise problems_error(problems)


def _same_value(a: Any, b: Any) -> bool:
    """Whether two config values say the same: numbers by value (``5`` and ``5.0``; a bool is
    no number), lists item by item, mappings key by key, anything else by ``==``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same_value(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _fill_defaults(validator: Any, properties: Any, instance: Any, schema: Any) -> Iterator[Any]:
    """``properties`` that first sets each missing property that has a default, as Snakemake's
    ``validate(..., set_default=True)`` does (the jsonschema FAQ's recipe), completes a mapping
    given in part from the property's own default, and writes a value
    the config gives in another form than its default's (``clip_grad: 5`` for ``5.0``, ``p: 0``
    for ``0.0``) as the default: Snakemake compares a job's params as text, and reran the
    shards and trainings of a config that wrote a default as an int."""
    if validator.is_type(instance, "object"):
        for name, sub in properties.items():
            if not (isinstance(sub, Mapping) and "default" in sub):
                continue
            default = sub["default"]
            if name not in instance or _same_value(instance[name], default):
                instance[name] = copy.deepcopy(default)
            elif isinstance(default, Mapping) and isinstance(instance[name], dict):
                # A mapping given in part takes the rest from this property's own default (a
                # line charset's source: line, val's 50 samples) before its definition's.
                for key, value in default.items():
                    instance[name].setdefault(key, copy.deepcopy(value))
    yield from jsonschema.Draft202012Validator.VALIDATORS["properties"](
        validator, properties, instance, schema
    )


_Filler = jsonschema.validators.extend(_Validator, {"properties": _fill_defaults})


@dataclasses.dataclass(frozen=True)
class SchemaCheck:
    """A config checked against the schema (`check_schema`).

    Attributes:
        config: A copy of the config with the schema's defaults filled in wherever the config
            has a mapping to fill, and the ``~`` and ``$VARS`` of its paths expanded
            (`expand_paths`), as the workflow sees it.
        problems: `config_problems`' lines (empty: valid).
        paths: The path of the key each problem is about.
    """

    config: dict[str, Any]
    problems: list[str]
    paths: list[list[Any]]

    def holds(self, *path: Any) -> bool:
        """Whether no problem is about the key at ``path``, a key under it or one above it: the
        checks past the schema can read its values."""
        n = len(path)
        return not any(list(path[: len(p)]) == p[:n] for p in self.paths)


def check_schema(
    config: Mapping[str, Any],
    schema_path: str | os.PathLike = SCHEMA_PATH,
    origins: Mapping[str, Any] | None = None,
    *,
    environment: bool = True,
) -> SchemaCheck:
    """``config`` checked against the schema, without raising: its problems, and a copy with
    the defaults filled in (an experiment without a ``train`` or ``eval`` block gets one, as
    in common.smk) and the ``~`` and ``$VARS`` of its paths expanded (`expand_paths`), so that
    the checks past the schema (``models.registry.validate_experiment``) can look at every part
    of it the schema finds nothing wrong with (`SchemaCheck.holds`) and every problem be listed
    at once (`problems_error`). ``origins`` as `config_problems`. ``environment`` False: a path
    naming a variable that is not set here, or a ``~user`` not known here (`path_problem`), is
    no problem and stays as written (a config for another machine, whose files are not read:
    ``python -m models.configcheck --no-files``)."""
    schema = load_schema(schema_path)
    at = _problems_at(config, schema, environment)
    filled = copy.deepcopy(dict(config))
    experiments = filled.get("experiments")
    for exp in experiments.values() if isinstance(experiments, dict) else ():
        if isinstance(exp, dict):
            exp.setdefault("train", {})
            exp.setdefault("eval", {})
    for _ in _Filler(schema).iter_errors(filled):
        pass  # the problems are `at`'s: this pass fills in the defaults
    _keep_split_degrades(config, filled)
    drop_written_defaults(filled)
    expand_paths(filled, schema)
    return SchemaCheck(
        filled, [_with_files(line, path, origins) for line, path in at], [path for _, path in at]
    )


def with_defaults(
    config: Mapping[str, Any],
    schema_path: str | os.PathLike = SCHEMA_PATH,
    origins: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A copy of a valid ``config`` with the schema's defaults filled in, as the workflow sees it
    (`check_schema`).

    Raises:
        ValueError: ``config`` is not valid (see `check_config`; ``origins`` as there).
    """
    checked = check_schema(config, schema_path, origins)
    if checked.problems:
        raise problems_error(checked.problems)
    return checked.config


def _keep_split_degrades(config: Mapping[str, Any], filled: dict[str, Any]) -> None:
    """Put back each split's ``degrade`` as the config gives it: the schema checks it as a
    task's degrade, whose defaults the filling pass wrote into it, and a split's degrade holds
    only what it changes of its task's (`synth.specs.split_config` merges the two)."""
    tasks = config.get("tasks")
    for task, task_cfg in tasks.items() if isinstance(tasks, Mapping) else ():
        splits = task_cfg.get("splits") if isinstance(task_cfg, Mapping) else None
        for split, split_cfg in splits.items() if isinstance(splits, Mapping) else ():
            if isinstance(split_cfg, Mapping) and "degrade" in split_cfg:
                filled["tasks"][task]["splits"][split]["degrade"] = copy.deepcopy(
                    split_cfg["degrade"]
                )


def drop_written_defaults(config: dict[str, Any]) -> None:
    """Take out the keys that have no default in the schema, so that their absence keeps a
    config's params (and the shards and models made before the key existed), where a config
    writes out the value that means unset: ``tasks.*.charset.space: false``,
    ``tasks.expr.oldstyle: 0``, ``tasks.line.corpus: null``."""
    tasks = config.get("tasks")
    for task in tasks.values() if isinstance(tasks, dict) else ():  # else the schema's problem
        if not isinstance(task, dict):
            continue
        charset = task.get("charset")
        if isinstance(charset, dict) and charset.get("space") is False:
            del charset["space"]
        if "oldstyle" in task and _same_value(task["oldstyle"], 0):
            del task["oldstyle"]
        if "corpus" in task and task["corpus"] is None:
            del task["corpus"]

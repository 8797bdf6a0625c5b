"""Every `_target_` of a composed config checked before any job runs.

A model, dataset or optimizer is any importable class or function named by `_target_` and
built with `hydra.utils.instantiate`. Before work starts, each target must import, each key
must be one of its parameters (unless it takes **kwargs), and values must fit the parameter's
annotation: its type (int, float, bool, str, Literal) and any `schema.Range` in `Annotated[...]`.
torch optimizers check their own values when built, so one is built over a dummy parameter.
"""
import contextlib
import inspect
import sys
import typing
from typing import Any, Dict, Iterator, List, Optional, Tuple

from omegaconf import DictConfig, ListConfig, OmegaConf

from sweepbook.env import preserved_environ
from sweepbook.schema import RULES_ATTRIBUTE, Range

INSTANTIATE_KEYS = {"_target_", "_partial_", "_args_", "_recursive_", "_convert_"}
SIMPLE_TYPES = (bool, int, float, str)
OPTIMIZER_RANGES = {"lr": Range(gt=0)}  # a torch optimizer with lr 0 trains nothing


def target_nodes(node: Any, key: str = "") -> Iterator[Tuple[str, DictConfig]]:
    """(dotted key, node) of every node with a `_target_`, nested ones included."""
    if isinstance(node, DictConfig):
        if "_target_" in node:
            yield key, node
        for child in node:
            yield from target_nodes(node[child], f"{key}.{child}" if key else str(child))
    elif isinstance(node, ListConfig):
        for index, child in enumerate(node):
            yield from target_nodes(child, f"{key}[{index}]")


def _hints(target: Any) -> dict:
    try:
        return typing.get_type_hints(target.__init__ if inspect.isclass(target) else target,
                                     include_extras=True)
    except Exception:  # unresolvable forward references: check names only
        return {}


def _unwrap(hint: Any) -> Tuple[Any, List[Range], bool]:
    """(base type, ranges, whether None is allowed) of an annotation."""
    ranges, optional = [], False
    if typing.get_origin(hint) is typing.Annotated:
        ranges = [m for m in hint.__metadata__ if isinstance(m, Range)]
        hint = typing.get_args(hint)[0]
    args = typing.get_args(hint)
    if typing.get_origin(hint) is typing.Union and type(None) in args:
        optional = True
        rest = [a for a in args if a is not type(None)]
        hint = rest[0] if len(rest) == 1 else hint
    if typing.get_origin(hint) is typing.Annotated:
        ranges += [m for m in hint.__metadata__ if isinstance(m, Range)]
        hint = typing.get_args(hint)[0]
    return hint, ranges, optional


def _type_fits(value: Any, base: Any) -> bool:
    if typing.get_origin(base) is typing.Literal:
        return value in typing.get_args(base)
    if base not in SIMPLE_TYPES:
        return True
    if base is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if base is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, base)


def value_problems(key: str, value: Any, hint: Any, where: str) -> List[str]:
    """Why `value` does not fit the annotation `hint` of a parameter of `where`."""
    base, ranges, optional = _unwrap(hint)
    if value is None:
        return [] if optional or base is Any else [f"{key}=None, but {where} needs a value"]
    if not _type_fits(value, base):
        wanted = (f"one of {', '.join(map(repr, typing.get_args(base)))}"
                  if typing.get_origin(base) is typing.Literal else f"a {base.__name__}")
        return [f"{key}={value!r} is not {wanted}, as {where} needs"]
    return [f"{key}={value!r} is out of range: {why}"
            for why in (r.problem(value) for r in ranges) if why]


def _parameters(target: Any):
    try:
        return inspect.signature(target).parameters
    except (TypeError, ValueError):  # some builtins have no signature: nothing to check
        return None


def _key_problems(key: str, node: DictConfig, target: Any) -> List[str]:
    parameters = _parameters(target)
    if parameters is None:
        return []
    named = [name for name, p in parameters.items()
             if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    takes_any = any(p.kind == p.VAR_KEYWORD for p in parameters.values())
    hints = _hints(target)
    problems = []
    for name in (k for k in node if k not in INSTANTIATE_KEYS):
        if name not in parameters and not takes_any:
            problems.append(f"{key}.{name}: {node._target_} has no parameter {name!r}; "
                            f"valid: {', '.join(named)}")
        elif name in hints:
            problems += value_problems(f"{key}.{name}", node[name], hints[name], node._target_)
    return problems or _rule_problems(key, node, target, parameters)


def _rule_problems(key: str, node: DictConfig, target: Any, parameters) -> List[str]:
    """The target's rules over several parameters (schema.rules), defaults filled in."""
    values = {name: p.default for name, p in parameters.items() if p.default is not p.empty}
    values.update({name: node[name] for name in node if name not in INSTANTIATE_KEYS})
    return [f"{key}: {why}, as {node._target_} needs"
            for why in (rule.problem(values) for rule in getattr(target, RULES_ATTRIBUTE, ()))
            if why]


@contextlib.contextmanager
def _without_dynamo(optimizer_class) -> Iterator[None]:
    """Building a torch optimizer imports torch._dynamo (seconds: the largest part of
    validating a sweep, profiled) only to keep dynamo out of Optimizer methods, which matters
    when compiling, never in this check. torch's lazy wrappers (torch._disable_dynamo) look
    for their cached answer in an attribute of the function they wrap: it is set for the
    block and removed after; a torch without such wrappers is left as it is."""
    wrapped = [getattr(method, "__wrapped__") for method in vars(optimizer_class).values()
               if getattr(method, "__wrapped__", None) is not None
               and getattr(method, "__code__", None) is not None
               and method.__code__.co_filename.endswith("_compile.py")]
    unset = [fn for fn in wrapped if not hasattr(fn, "__dynamo_disable")]
    for fn in unset:
        setattr(fn, "__dynamo_disable", fn)
    try:
        yield
    finally:
        for fn in unset:
            delattr(fn, "__dynamo_disable")


def _optimizer_problems(key: str, node: DictConfig, target: Any) -> List[str]:
    """A torch optimizer built over one dummy parameter: torch's own checks of its values."""
    optim = sys.modules.get("torch.optim")
    if not (optim and inspect.isclass(target) and issubclass(target, optim.Optimizer)):
        return []
    problems = [f"{key}.{name}={node.get(name)!r} is out of range: {limit.problem(node.get(name))}"
                for name, limit in OPTIMIZER_RANGES.items() if limit.problem(node.get(name))]
    if problems:
        return problems
    import torch
    from hydra.utils import instantiate

    try:
        with preserved_environ(), _without_dynamo(optim.Optimizer):
            instantiate(node, _partial_=True)([torch.nn.Parameter(torch.zeros(1))])
    except Exception as error:
        values = ", ".join(f"{key}.{k}={node[k]!r}" for k in node if k not in INSTANTIATE_KEYS)
        return [f"{key} ({values}) is refused by {node._target_}: {error}"]
    return []


def _node_problems(key: str, node: DictConfig) -> List[str]:
    from hydra.utils import get_object

    try:
        target = get_object(node._target_)
    except Exception as error:
        return [f"{key}._target_={node._target_!r} cannot be imported: {error}"]
    return _key_problems(key, node, target) or _optimizer_problems(key, node, target)


def target_problems(cfg: DictConfig, cache: Optional[Dict[Tuple[str, str], List[str]]] = None
                    ) -> List[str]:
    """Every `_target_` problem of `cfg`, readable, each naming its key. A sweep passes a
    `cache` (key and node -> problems): its jobs share most nodes, and a node's problems
    depend on nothing else."""
    if cache is None:
        return [p for key, node in target_nodes(cfg) for p in _node_problems(key, node)]
    problems = []
    for key, node in target_nodes(cfg):
        seen = (key, OmegaConf.to_yaml(node))
        if seen not in cache:
            cache[seen] = _node_problems(key, node)
        problems += cache[seen]
    return problems


def build(node: DictConfig, key: str, **given: Any) -> Any:
    """Instantiate the `_target_` node at `key` with `given` (what code supplies: a seed, the
    data's shape). A config key that `given` would silently replace is refused, so a run
    never records a value that did not apply; the target's own errors (a missing file) reach
    the caller unwrapped by Hydra."""
    from hydra.utils import instantiate

    clash = sorted(set(given) & {name for name in node if name not in INSTANTIATE_KEYS})
    if clash:
        raise ValueError(f"{', '.join(f'{key}.{name}' for name in clash)}: set by the code "
                         f"that builds {key}, not by the config; remove it from the config")
    return instantiate(node, _partial_=True)(**given)

#!/usr/bin/env python3
"""Checks compose.yaml against the Compose Specification and against the project.

    scripts/check-compose.sh                 # sets up .tools/venv, then runs this file
    python scripts/check_compose.py [--compose FILE] [--self-test]

1. Schema: the file, after ${VAR:-default} interpolation (defaults only, the environment is not
   read), must validate against ci/compose-spec.json.
2. Project: everything the file names must exist in this repository:
   - build contexts and Dockerfiles; the Dockerfile's COPY sources (and that .dockerignore keeps
     them and the workspace's sources in the build context); the binaries it builds
     (ARG OMS_BINARIES) must be workspace binaries, built by its `cargo build`;
   - every bind-mounted file; every named volume is declared (and every declared one used); every
     volume mounted into the OMS image has its mount point made by the Dockerfile, owned by the
     image's USER (a new volume takes that folder's owner, so the user can write into it);
   - every `entrypoint` + `command` of a service built from the Dockerfile is a binary of the
     image, or `bash SCRIPT` with SCRIPT a mounted file of the repository, whose own commands
     (oms-*) are binaries of the image, whose OMS_* variables are config keys, and whose required
     variables (${VAR:?}) the service sets;
   - every OMS_* variable is a key of the services' config (shared/config/src/lib.rs);
   - each service's health check asks GET /readyz on the port the service listens on
     (built-in default < oms.toml profile < environment), and the edge publishes its port;
   - the NATS URLs and database URLs point at services of this file (with the right ports,
     databases and users), which the service waits for (depends_on: service_healthy); the
     services wait for the topology (`oms-provision topology`, service_completed_successfully);
   - each nats node starts from the config the secrets one-shot generates (never anonymous), sets
     every variable of the config template it includes, routes name the nodes.
3. Secrets (compose/make-secrets.sh, the `secrets` one-shot): no password, secret or seed in the
   file (no such variable, no password in a URL); every NATS client mounts, read-only at its
   nats.creds_dir, a volume that the one-shot fills for its identity (shared/topology/src/identity.rs) and
   that no container of another identity mounts; the originals' volume is the one-shot's alone;
   each SQL service logs in as its own role (no two share one), which the init SQL creates and
   owns its database, with the password from its pgpass file (PGPASSFILE); the postgres superuser's
   password comes from a file the one-shot writes; one-shots do not restart, and `up --wait` can
   see them end.
   Workspace binaries come from the crates' Cargo.toml files and src/bin/, config keys and
   defaults from shared/config/src/lib.rs, identities from shared/topology/src/identity.rs: nothing about them
   is written down twice here.

Paths in the checked file are relative to the repository root (where compose.yaml lives).
Exit status 0 when all is well, 1 with one line per problem otherwise.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import shlex
import sys
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

if sys.version_info < (3, 11):
    sys.exit("check_compose.py needs Python >= 3.11 (tomllib); run it through scripts/check-compose.sh")

import tomllib  # noqa: E402

try:
    import jsonschema  # noqa: E402
    import yaml  # noqa: E402
except ModuleNotFoundError as e:  # pragma: no cover
    sys.exit(f"check_compose.py: {e.name} is missing; run scripts/check-compose.sh (installs ci/requirements.txt)")

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "ci" / "compose-spec.json"
CONFIG_RS = Path("shared/config/src/lib.rs")
IDENTITY_RS = Path("shared/topology/src/identity.rs")
LIB_SH = Path("scripts/lib.sh")
# The one-shot that makes the installation's secrets and hands each recipient its own.
SECRETS_SCRIPT = "compose/make-secrets.sh"
# Binaries that are not one of the services, and the broker identity each connects as (the
# services connect as the identity of their name). oms-provision connects only for `topology`.
TOOL_IDENTITIES = {"oms-provision": "provisioner", "oms-dlq": "operator", "loadgen": "loadgen"}
SHELLS = ("bash", "sh", "/bin/bash", "/bin/sh", "/usr/bin/bash")


class Problems:
    """Collects problems as 'where: what' lines."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, what: str) -> None:
        line = f"{where}: {what}" if where else what
        if line not in self.items:  # e.g. a Dockerfile problem, seen from each service built from it
            self.items.append(line)

    def __bool__(self) -> bool:
        return bool(self.items)


# ---------------------------------------------------------------------------------------------
# Compose file: loading and interpolation.

_INTERP = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


def interpolate(value):
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, $VAR and $$, as if no variable were set."""
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    if not isinstance(value, str):
        return value

    def repl(m: re.Match) -> str:
        if m.group(1):
            return "$"
        op, arg = m.group(3), m.group(4)
        if op in (":-", "-"):
            return arg
        return ""

    return _INTERP.sub(repl, value)


def load_compose(path: Path) -> dict:
    with path.open(encoding="utf-8") as f:
        doc = yaml.safe_load(f)  # resolves anchors and `<<` merge keys
    if not isinstance(doc, dict):
        raise SystemExit(f"{path}: not a YAML mapping")
    return interpolate(doc)


# ---------------------------------------------------------------------------------------------
# Schema.

_GO_DURATION = re.compile(r"^[-+]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))+$|^0$")
_PORT_RANGE = r"\d+(-\d+)?"
_PORTS = re.compile(
    rf"^((\[[0-9a-fA-F:.]+\]|[0-9.]+|[A-Za-z0-9.-]+):)?(({_PORT_RANGE})?:)?{_PORT_RANGE}(/(tcp|udp|sctp))?$"
)
_EXPOSE = re.compile(rf"^{_PORT_RANGE}(/(tcp|udp|sctp))?$")


def _format_checker() -> jsonschema.FormatChecker:
    checker = jsonschema.FormatChecker(formats=())

    @checker.checks("duration")
    def duration(value) -> bool:
        return not isinstance(value, str) or bool(_GO_DURATION.match(value))

    @checker.checks("ports")
    def ports(value) -> bool:
        return isinstance(value, (int, float)) or bool(_PORTS.match(str(value)))

    @checker.checks("expose")
    def expose(value) -> bool:
        return isinstance(value, (int, float)) or bool(_EXPOSE.match(str(value)))

    return checker


def check_schema(doc: dict, schema: dict, problems: Problems) -> None:
    # The schema declares draft 2019-09 (under a URI jsonschema does not look up by itself).
    validator = jsonschema.Draft201909Validator(schema, format_checker=_format_checker())
    for error in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        best = jsonschema.exceptions.best_match([error])  # descends into oneOf/anyOf alternatives
        where = ".".join(str(p) for p in best.absolute_path) or "(top level)"
        message = best.message
        unknown = re.findall(r"'([^']+)' does not match any of the regexes", message) or re.findall(
            r"'([^']+)' (?:was|were) unexpected", message
        )
        if best.validator == "additionalProperties" and unknown:
            message = f"unknown key {', '.join(repr(u) for u in unknown)} (not in the Compose Specification schema)"
        problems.add(f"schema: {where}", message)


# ---------------------------------------------------------------------------------------------
# The project: workspace binaries, config keys and defaults, Dockerfile, .dockerignore.


@dataclass
class Package:
    name: str
    dir: Path  # relative to the root
    binaries: list[str]


def workspace_packages(root: Path) -> list[Package]:
    manifest = tomllib.loads((root / "Cargo.toml").read_text(encoding="utf-8"))
    members = manifest.get("workspace", {}).get("members", [])
    dirs: list[Path] = []
    for member in members:
        if any(c in member for c in "*?["):
            dirs += sorted(p.relative_to(root) for p in root.glob(member) if (p / "Cargo.toml").is_file())
        else:
            dirs.append(Path(member))
    if "package" in manifest:
        dirs.insert(0, Path("."))
    packages = []
    for d in dirs:
        toml_path = root / d / "Cargo.toml"
        if not toml_path.is_file():
            raise SystemExit(f"Cargo.toml: workspace member {d} has no Cargo.toml")
        pkg = tomllib.loads(toml_path.read_text(encoding="utf-8"))
        name = pkg["package"]["name"]
        bins: list[str] = []
        autobins = pkg["package"].get("autobins", True)
        if autobins and (root / d / "src" / "main.rs").is_file():
            bins.append(name)
        if autobins and (root / d / "src" / "bin").is_dir():
            for p in sorted((root / d / "src" / "bin").iterdir()):
                if p.suffix == ".rs" and p.is_file():
                    bins.append(p.stem)
                elif p.is_dir() and (p / "main.rs").is_file():
                    bins.append(p.name)
        for b in pkg.get("bin", []):
            if "name" in b and b["name"] not in bins:
                bins.append(b["name"])
        packages.append(Package(name, d, bins))
    return packages


@dataclass
class ConfigModel:
    """The services' config as shared/config/src/lib.rs defines it."""

    tree: dict  # key -> subtree (dict) or None (a leaf)
    defaults: dict  # dotted key -> default value, where config.rs states a literal
    env_prefix: str
    env_split: str
    env_ignored: set[str]  # upper-case names after the prefix
    service_sections: list[str]  # fields of Config whose type is the per-service struct

    def lookup(self, dotted: str):
        """The subtree or leaf (None) at dotted, or raises KeyError."""
        node = self.tree
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                raise KeyError(dotted)
            node = node[part]
        return node


_RUST_TOKENS = re.compile(r'r(#*)".*?"\1|"(?:[^"\\]|\\.)*"|//[^\n]*|/\*.*?\*/', flags=re.S)


def _strip_comments(src: str) -> str:
    """Rust source without comments (string literals, raw ones too, stay as they are)."""
    return _RUST_TOKENS.sub(lambda m: "" if m.group(0).startswith("/") else m.group(0), src)


def _brace_block(src: str, start: int) -> str:
    """The text between the brace at or after start and its matching closing brace."""
    i = src.index("{", start)
    depth = 0
    for j in range(i, len(src)):
        if src[j] == "{":
            depth += 1
        elif src[j] == "}":
            depth -= 1
            if depth == 0:
                return src[i + 1 : j]
    raise ValueError("unbalanced braces")


def parse_config_rs(path: Path) -> ConfigModel:
    where = str(CONFIG_RS)
    src = _strip_comments(path.read_text(encoding="utf-8"))
    structs: dict[str, list[tuple[str, str]]] = {}
    for m in re.finditer(r"pub\s+struct\s+(\w+)\s*\{", src):
        body = _brace_block(src, m.start())
        fields = []
        rename = None
        for line in body.splitlines():
            line = line.strip()
            r = re.match(r'#\[serde\(.*\brename\s*=\s*"([^"]+)"', line)
            if r:
                rename = r.group(1)
            f = re.match(r"pub\s+(\w+)\s*:\s*(.+?),?$", line)
            if f:
                fields.append((rename or f.group(1), f.group(2).strip().rstrip(",")))
                rename = None
        structs[m.group(1)] = fields
    if "Config" not in structs:
        raise SystemExit(f"{where}: no `pub struct Config` found; the compose check reads the config keys there")

    def inner(ty: str) -> str:
        m = re.fullmatch(r"(?:Option|Box)<\s*(.+)\s*>", ty)
        return inner(m.group(1)) if m else ty

    def build(name: str, seen: tuple) -> dict:
        tree = {}
        for key, ty in structs[name]:
            t = inner(ty)
            tree[key] = build(t, seen + (t,)) if t in structs and t not in seen else None
        return tree

    tree = build("Config", ("Config",))

    # Defaults: literal values in `impl Default for X`, and the per-service helper `name: f(port)`.
    defaults: dict = {}
    owners: dict[str, list[str]] = {}  # struct -> dotted prefixes where it appears
    def walk(name: str, prefix: str, seen: tuple):
        owners.setdefault(name, []).append(prefix)
        for key, ty in structs[name]:
            t = inner(ty)
            if t in structs and t not in seen:
                walk(t, f"{prefix}{key}.", seen + (t,))
    walk("Config", "", ("Config",))

    service_struct_fields = {}
    for m in re.finditer(r"impl\s+Default\s+for\s+(\w+)\s*\{", src):
        name = m.group(1)
        if name not in structs:
            continue
        body = _brace_block(src, m.start())
        field_names = {k for k, _ in structs[name]}
        for f in re.finditer(r'\b(\w+)\s*:\s*(?:"((?:[^"\\]|\\.)*)"|(-?\d+)\b(?!\s*[.*/+-]))', body):
            key, s, n = f.group(1), f.group(2), f.group(3)
            if key not in field_names:
                continue
            for prefix in owners.get(name, []):
                defaults[f"{prefix}{key}"] = s if s is not None else int(n)
        if name == "Config":
            # `edge: service(8090)`: a helper that builds the per-service struct from its port.
            for f in re.finditer(r"\b(\w+)\s*:\s*(\w+)\(\s*(\d+)\s*\)", body):
                key, _helper, port = f.groups()
                if key in field_names:
                    service_struct_fields[key] = int(port)

    # The per-service struct: the type shared by the Config fields that have an `http_port`.
    service_sections = [
        key for key, ty in structs["Config"] if inner(ty) in structs and "http_port" in dict(structs[inner(ty)])
    ]
    for key in service_sections:
        if key in service_struct_fields:
            defaults[f"{key}.http_port"] = service_struct_fields[key]
        if f"{key}.http_port" not in defaults:
            raise SystemExit(f"{where}: cannot find the default http_port of `{key}` in `impl Default for Config`")

    env = re.search(r'Env::prefixed\(\s*"([^"]+)"\s*\)', src)
    if not env:
        raise SystemExit(f'{where}: no Env::prefixed("...") provider found; the compose check reads the env prefix there')
    rest = src[env.end(1) : env.end(1) + 400]
    split = re.search(r'\.split\(\s*"([^"]+)"\s*\)', rest)
    ignore = re.search(r"\.ignore\(\s*&\[([^\]]*)\]", rest)
    ignored = {s.upper() for s in re.findall(r'"([^"]+)"', ignore.group(1))} if ignore else set()
    return ConfigModel(tree, defaults, env.group(1), split.group(1) if split else "__", ignored, service_sections)


# ---- Dockerfile ----


@dataclass
class Instruction:
    cmd: str
    args: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)


def parse_dockerfile(path: Path) -> list[Stage]:
    stages: list[Stage] = []
    pending, start = "", 0
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = n
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text = pending + line
        pending = ""
        cmd, _, args = text.partition(" ")
        ins = Instruction(cmd.upper(), args.strip(), start)
        if ins.cmd == "FROM":
            words = [w for w in ins.args.split() if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        elif stages:
            stages[-1].instructions.append(ins)
    return stages


def _args_of(ins: Instruction) -> list[str]:
    if ins.args.startswith("["):
        return json.loads(ins.args)
    return shlex.split(ins.args)


def copy_parts(ins: Instruction) -> tuple[dict, list[str], str]:
    words = _args_of(ins)
    flags = {}
    while words and words[0].startswith("--"):
        k, _, v = words.pop(0)[2:].partition("=")
        flags[k] = v
    return flags, words[:-1], words[-1] if words else ""


def stage_vars(stage: Stage, kind: str) -> dict[str, str]:
    out = {}
    for ins in stage.instructions:
        if ins.cmd != kind:
            continue
        words = shlex.split(ins.args)
        if kind == "ENV" and len(words) >= 2 and "=" not in words[0]:
            out[words[0]] = " ".join(words[1:])  # legacy `ENV KEY value`
            continue
        for w in words:
            k, eq, v = w.partition("=")
            out[k] = v if eq else out.get(k, "")
    return out


def _shell_commands(text: str) -> list[list[str]]:
    """The simple commands of a RUN line (split at &&, ||, ;), as word lists."""
    try:
        words = shlex.split(text, comments=True)
    except ValueError:
        return []
    out: list[list[str]] = [[]]
    for w in words:
        if w in ("&&", "||", ";", "|"):
            out.append([])
        elif w.endswith(";"):
            out[-1].append(w[:-1])
            out.append([])
        else:
            out[-1].append(w)
    return [c for c in out if c]


def stage_dirs(stage: Stage) -> dict[str, str]:
    """Folders a stage's RUN steps make (mkdir, install -d), with their owner (chown, install -o)."""
    dirs: dict[str, str] = {}
    for ins in stage.instructions:
        if ins.cmd != "RUN":
            continue
        for cmd in _shell_commands(ins.args):
            name, args = PurePosixPath(cmd[0]).name, cmd[1:]
            if name == "mkdir":
                for a in args:
                    if a.startswith("/"):
                        dirs.setdefault(str(PurePosixPath(a)), "root")
            elif name == "install" and any(re.fullmatch(r"-\w*d\w*|--directory", a) for a in args):
                owner, i = "root", 0
                paths = []
                while i < len(args):
                    a = args[i]
                    if a in ("-o", "--owner", "-g", "--group", "-m", "--mode") and i + 1 < len(args):
                        if a in ("-o", "--owner"):
                            owner = args[i + 1]
                        i += 2
                        continue
                    if a.startswith("--owner="):
                        owner = a.split("=", 1)[1]
                    elif a.startswith("/"):
                        paths.append(str(PurePosixPath(a)))
                    i += 1
                for p in paths:
                    dirs[p] = owner
            elif name == "chown":
                spec = [a for a in args if not a.startswith("-")]
                if len(spec) >= 2:
                    owner = spec[0].split(":", 1)[0]
                    for p in spec[1:]:
                        if p.startswith("/"):
                            dirs[str(PurePosixPath(p))] = owner
    return dirs


# ---- .dockerignore (the moby pattern rules: last matching pattern wins, `!` re-includes) ----


def _pattern_regex(pattern: str) -> re.Pattern:
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            if i < len(pattern) and pattern[i] == "/":
                out = out[:-2] + "(.*/)?"
                i += 1
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            j = pattern.find("]", i)
            if j < 0:
                out += re.escape(c)
            else:
                out += "[" + pattern[i + 1 : j].replace("\\", "\\\\") + "]"
                i = j
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(c)
        i += 1
    return re.compile(f"^{out}$")


class DockerIgnore:
    def __init__(self, path: Path):
        self.patterns: list[tuple[bool, re.Pattern, str]] = []
        if path.is_file():
            for raw in path.read_text(encoding="utf-8").splitlines():
                line = raw.strip()
                if not line or line.startswith("#"):
                    continue
                neg = line.startswith("!")
                pat = str(PurePosixPath(line[1:].strip() if neg else line)).lstrip("/")
                self.patterns.append((neg, _pattern_regex(pat), line))

    def excluded(self, rel: str) -> bool:
        parts = PurePosixPath(rel).parts
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        matched = False
        for neg, rx, _ in self.patterns:
            if neg and not matched:
                continue
            if any(rx.match(c) for c in candidates):
                matched = not neg
        return matched


# ---- the other facts ----


def nats_server_version(root: Path) -> str | None:
    p = root / LIB_SH
    if not p.is_file():
        return None
    m = re.search(r'^OMS_NATS_SERVER_VERSION="([^"]+)"', p.read_text(encoding="utf-8"), flags=re.M)
    return m.group(1) if m else None


def identity_names(root: Path) -> list[str]:
    """The broker identities' names, from `Identity::name` in shared/topology/src/identity.rs."""
    path = root / IDENTITY_RS
    if not path.is_file():
        raise SystemExit(f"{IDENTITY_RS}: missing; the compose check reads the broker identities there")
    src = _strip_comments(path.read_text(encoding="utf-8"))
    m = re.search(r"fn\s+name\s*\(\s*self\s*\)", src)
    if not m:
        raise SystemExit(f"{IDENTITY_RS}: no `fn name(self)`; the compose check reads the identities' names there")
    names = re.findall(r'Identity::\w+\s*=>\s*"([^"]+)"', _brace_block(src, m.end()))
    if not names:
        raise SystemExit(f"{IDENTITY_RS}: `fn name` names no identity")
    return names


@dataclass
class InitSql:
    dbs: set[str] = field(default_factory=set)
    owners: dict[str, str] = field(default_factory=dict)  # database -> owner role
    roles: dict[str, str] = field(default_factory=dict)  # role -> the rest of its CREATE ROLE
    literal_passwords: list[str] = field(default_factory=list)  # roles given a password in the file


def sql_init_facts(paths: list[Path]) -> InitSql:
    """Databases (and owners) and roles that init SQL files create."""
    out = InitSql()
    for p in paths:
        sql = re.sub(r"--[^\n]*", "", p.read_text(encoding="utf-8"))
        for m in re.finditer(r'\bCREATE\s+DATABASE\s+"?(\w+)"?([^;]*)', sql, flags=re.I):
            out.dbs.add(m.group(1))
            owner = re.search(r'\bOWNER\s*=?\s*"?(\w+)"?', m.group(2), flags=re.I)
            if owner:
                out.owners[m.group(1)] = owner.group(1)
        for m in re.finditer(r'\bCREATE\s+(?:ROLE|USER)\s+"?(\w+)"?([^;]*)', sql, flags=re.I):
            out.roles[m.group(1)] = m.group(2)
            if re.search(r"\bPASSWORD\s+(E?'|\$)", m.group(2), flags=re.I):
                out.literal_passwords.append(m.group(1))
    return out


def deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def set_dotted(d: dict, dotted: str, value) -> None:
    parts = dotted.split(".")
    for p in parts[:-1]:
        d = d.setdefault(p, {})
    d[parts[-1]] = value


def get_dotted(d: dict, dotted: str):
    for p in dotted.split("."):
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


# ---------------------------------------------------------------------------------------------
# The checks.


def env_of(svc: dict) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        out = {}
        for item in env:
            k, eq, v = str(item).partition("=")
            out[k] = v if eq else ""
        return out
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def command_of(svc: dict) -> list[str]:
    cmd = svc.get("command")
    if cmd is None:
        return []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def argv_of(svc: dict) -> list[str]:
    """What the container runs: `entrypoint` + `command` (the OMS image has no ENTRYPOINT)."""
    ep = svc.get("entrypoint")
    if ep is None:
        ep = []
    elif isinstance(ep, str):
        ep = shlex.split(ep)
    return [str(e) for e in ep] + command_of(svc)


def restart_policy(svc: dict) -> str:
    return str(svc.get("restart", "no")).split(":", 1)[0]


def is_one_shot(svc: dict) -> bool:
    return restart_policy(svc) in ("no", "on-failure")


@dataclass
class Script:
    """A shell script a service runs, as far as the check reads it."""

    path: str  # relative to the root
    text: str  # without comments
    required: list[str]  # ${VAR:?...}
    oms_commands: list[str]  # oms-* words in command position
    oms_vars: list[str]  # OMS_* variables it sets or reads


def read_script(root: Path, rel: str) -> Script | None:
    p = root / rel
    if not p.is_file():
        return None
    text = "\n".join(
        line for line in p.read_text(encoding="utf-8").splitlines() if not line.lstrip().startswith("#")
    )
    required = sorted(set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):\?", text)))
    commands = sorted(set(re.findall(r"(?:^|[\s;&|(`]|\$\()((?:oms|loadgen)[\w-]*)(?=\s|$)", text, flags=re.M)))
    commands = [c for c in commands if c.startswith("oms-") or c == "loadgen"]
    oms_vars = sorted(set(re.findall(r"\b(OMS_[A-Z0-9_]+)", text)))
    return Script(rel, text, required, commands, oms_vars)


_SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|NKEY|SEED|PRIVATE|API_?KEY", flags=re.I)
_URL_PASSWORD = re.compile(r"\b[a-z][a-z0-9+.-]*://[^/@\s:]*:[^/@\s]+@", flags=re.I)


@dataclass
class Mount:
    kind: str  # bind | volume | tmpfs
    source: str
    target: str
    read_only: bool


def mounts_of(svc: dict) -> list[Mount]:
    out = []
    for v in svc.get("volumes") or []:
        if isinstance(v, dict):
            out.append(Mount(v.get("type", "volume"), str(v.get("source", "")), str(v.get("target", "")), bool(v.get("read_only"))))
            continue
        parts = str(v).split(":")
        if len(parts) == 1:
            out.append(Mount("volume", "", parts[0], False))
            continue
        src, dst = parts[0], parts[1]
        mode = parts[2] if len(parts) > 2 else ""
        kind = "bind" if src.startswith((".", "/", "~")) else "volume"
        out.append(Mount(kind, src, dst, "ro" in mode.split(",")))
    return out


def healthcheck_test(svc: dict) -> list[str] | None:
    hc = svc.get("healthcheck")
    if not hc or hc.get("disable"):
        return None
    test = hc.get("test")
    if isinstance(test, str):
        return ["CMD-SHELL", test]
    return [str(t) for t in test] if test else None


def depends_healthy(svc: dict) -> dict[str, str]:
    dep = svc.get("depends_on") or {}
    if isinstance(dep, list):
        return {d: "service_started" for d in dep}
    return {k: (v or {}).get("condition", "service_started") for k, v in dep.items()}


def published_ports(svc: dict) -> list[tuple[int | None, int]]:
    """(published, target) pairs of the single-port mappings (ranges are left out)."""
    out = []
    for p in svc.get("ports") or []:
        if isinstance(p, dict):
            pub, tgt = str(p.get("published", "")), str(p.get("target", ""))
        else:
            bits = str(p).split("/")[0].rsplit(":", 2)
            pub, tgt = (bits[-2] if len(bits) > 1 else ""), bits[-1]
        if tgt.isdigit():
            out.append((int(pub) if pub.isdigit() else None, int(tgt)))
    return out


def url_port(u: urllib.parse.SplitResult, default: int) -> int | None:
    try:
        return u.port or default
    except ValueError:  # not a number, or out of range
        return None


_URL_IN_TEST = re.compile(r"https?://([^/:\s]+):(\d+)(/[^\s\"']*)?")


@dataclass
class SecretsService:
    """The `secrets` one-shot (compose/make-secrets.sh), as the other checks need it."""

    name: str
    env: dict[str, str]
    out_dir: str
    roles: list[str]
    # recipient name (an identity, or `postgres`) -> the volume mounted at <out_dir>/<name>
    recipients: dict[str, str]


class Checker:
    def __init__(self, root: Path):
        self.root = root
        self.packages = workspace_packages(root)
        self.binaries = {b: p for p in self.packages for b in p.binaries}
        self.config = parse_config_rs(root / CONFIG_RS)
        self.identities = identity_names(root)
        self.nats_version = nats_server_version(root)
        self.secrets: list[SecretsService] = []
        self._services: dict = {}

    # -- helpers --

    def rel(self, p: Path) -> str:
        try:
            return str(p.resolve().relative_to(self.root.resolve()))
        except ValueError:
            return str(p)

    def config_key(self, env_name: str) -> str | None:
        """The dotted config key of an OMS_* variable, or None when the variable is not one."""
        prefix = self.config.env_prefix
        if not env_name.startswith(prefix):
            return None
        return ".".join(env_name[len(prefix) :].split(self.config.env_split)).lower()

    def identity_of(self, argv: list[str]) -> str | None:
        """The broker identity a command connects as, or None when it does not connect."""
        if not argv:
            return None
        binary = argv[0]
        if binary == "oms-provision":
            return "provisioner" if "topology" in argv[1:] else None
        if binary in TOOL_IDENTITIES:
            return TOOL_IDENTITIES[binary]
        section = binary[len("oms-") :] if binary.startswith("oms-") else None
        if section in self.config.service_sections:
            return section
        return None

    def volume_users(self, services: dict, volume: str) -> list[tuple[str, Mount]]:
        return [(n, m) for n, s in services.items() for m in mounts_of(s) if m.kind == "volume" and m.source == volume]

    def secrets_writing(self, volume: str) -> list[tuple[SecretsService, str]]:
        """(secrets service, recipient) pairs that fill `volume`."""
        return [(sec, r) for sec in self.secrets for r, v in sec.recipients.items() if v == volume]

    # -- the whole file --

    def check(self, doc: dict, schema: dict, name: str = "compose.yaml") -> Problems:
        problems = Problems()
        check_schema(doc, schema, problems)
        services = doc.get("services")
        if not isinstance(services, dict) or not services:
            problems.add(name, "no services")
            return problems
        services = {k: v for k, v in services.items() if isinstance(v, dict)}
        declared_volumes = set((doc.get("volumes") or {}).keys())
        used_volumes: set[str] = set()
        self.secrets = self.find_secrets_services(services)
        self._services = services

        for sname, svc in services.items():
            at = f"services.{sname}"
            self.check_mounts(at, svc, declared_volumes, used_volumes, problems)
            self.check_depends(at, svc, services, problems)
            self.check_env_names(at, svc, problems)
            self.check_no_secrets(at, svc, problems)
            self.check_scripts_mounted(at, svc, problems)
            if "build" in svc:
                facts = self.image_facts(at, svc["build"], problems)
                if facts is not None:
                    self.check_oms_service(at, sname, svc, services, facts, problems)
            image = str(svc.get("image", ""))
            if image.split("/")[-1].startswith("nats:"):
                self.check_nats_node(at, sname, svc, problems)
            if image.split("/")[-1].startswith("postgres:"):
                self.check_postgres(at, sname, svc, problems)

        for v in sorted(declared_volumes - used_volumes):
            problems.add(f"volumes.{v}", "declared but no service mounts it")
        self.check_cluster(services, problems)
        self.check_one_shots(services, problems)
        self.check_secrets_services(services, problems)
        return problems

    # -- per service --

    def check_mounts(self, at, svc, declared, used, problems):
        for m in mounts_of(svc):
            if m.kind == "bind":
                src = Path(m.source).expanduser()
                path = src if src.is_absolute() else self.root / src
                if not path.exists():
                    problems.add(f"{at}.volumes", f"bind-mounted {m.source} does not exist in the repository")
            elif m.kind == "volume" and m.source:
                used.add(m.source)
                if m.source not in declared:
                    problems.add(f"{at}.volumes", f"named volume '{m.source}' is not declared under the top-level volumes")

    def check_depends(self, at, svc, services, problems):
        for dep, cond in depends_healthy(svc).items():
            if dep not in services:
                problems.add(f"{at}.depends_on", f"'{dep}' is not a service of this file")
            elif cond == "service_healthy" and healthcheck_test(services[dep]) is None:
                problems.add(f"{at}.depends_on.{dep}", "waits for service_healthy, but that service has no health check")

    def check_oms_var(self, where: str, k: str, problems: Problems) -> None:
        """An OMS_* variable must name a config key (a leaf)."""
        key = self.config_key(k)
        if key is None or k[len(self.config.env_prefix) :].upper() in self.config.env_ignored:
            return
        try:
            node = self.config.lookup(key)
        except KeyError:
            parent = key.rsplit(".", 1)[0] if "." in key else ""
            try:
                sub = self.config.lookup(parent) if parent else self.config.tree
            except KeyError:
                parent, sub = "", self.config.tree
            known = ", ".join(sorted(sub)) if isinstance(sub, dict) else ""
            hint = f" (keys{' under ' + parent if parent else ''}: {known})" if known else ""
            problems.add(where, f"no config key `{key}` in {CONFIG_RS}{hint}")
            return
        if isinstance(node, dict):
            problems.add(where, f"`{key}` is a table in {CONFIG_RS}; set one of its keys: {', '.join(sorted(node))}")

    def check_env_names(self, at, svc, problems):
        for k in env_of(svc):
            self.check_oms_var(f"{at}.environment.{k}", k, problems)

    def check_no_secrets(self, at, svc, problems):
        """Secrets are made per installation, never written in the file."""
        for k, v in env_of(svc).items():
            # A variable that names where a secret is (a file, a folder) is fine.
            if v and _SECRET_NAME.search(k) and not re.search(r"(_FILE|_DIR|_PATH|PASSFILE)$", k.upper()):
                problems.add(f"{at}.environment.{k}", "a secret in compose.yaml: let the secrets one-shot make it "
                             f"and give it to the service as a file ({SECRETS_SCRIPT})")
            if _URL_PASSWORD.search(v):
                problems.add(f"{at}.environment.{k}", "a password in a URL in compose.yaml: leave it out "
                             "(a database password comes from the service's pgpass file, PGPASSFILE)")

    def check_scripts_mounted(self, at, svc, problems):
        argv = argv_of(svc)
        if len(argv) >= 2 and argv[0] in SHELLS and argv[1].startswith("/"):
            mount = next((m for m in mounts_of(svc) if m.target == argv[1]), None)
            if mount is None or mount.kind != "bind":
                problems.add(f"{at}.command", f"{argv[0]} {argv[1]}: no file of the repository is mounted there")
            elif not mount.read_only:
                problems.add(f"{at}.volumes", f"mount {mount.source} read-only (:ro)")

    def script_of(self, svc) -> Script | None:
        argv = argv_of(svc)
        if len(argv) < 2 or argv[0] not in SHELLS:
            return None
        mount = next((m for m in mounts_of(svc) if m.target == argv[1] and m.kind == "bind"), None)
        if mount is None:
            return None
        return read_script(self.root, str(PurePosixPath(mount.source)))

    # -- the secrets one-shot --

    def find_secrets_services(self, services) -> list[SecretsService]:
        found = []
        for sname, svc in services.items():
            script = self.script_of(svc)
            if script is None or script.path != SECRETS_SCRIPT:
                continue
            env = env_of(svc)
            out_dir = str(PurePosixPath(env.get("OUT_DIR", "/nonexistent")))
            recipients = {}
            for m in mounts_of(svc):
                t = PurePosixPath(m.target)
                if str(t.parent) == out_dir:
                    recipients[t.name] = m.source if m.kind == "volume" else ""
            found.append(SecretsService(sname, env, out_dir, env.get("POSTGRES_ROLES", "").split(), recipients))
        return found

    def check_secrets_services(self, services, problems):
        if not self.secrets:
            problems.add("services", f"no service runs {SECRETS_SCRIPT}: who makes the seeds and passwords?")
        for sec in self.secrets:
            at = f"services.{sec.name}"
            svc = services[sec.name]
            if svc.get("network_mode") != "none":
                problems.add(f"{at}.network_mode", "set it to none: the one-shot that holds every secret needs no network")
            mounts = mounts_of(svc)
            store = str(PurePosixPath(sec.env.get("SECRETS_DIR", "")))
            originals = next((m for m in mounts if m.target == store), None)
            if originals is None or originals.kind != "volume" or not originals.source:
                problems.add(f"{at}.volumes", f"SECRETS_DIR {store}: mount a named volume there (the originals)")
            else:
                for other, _ in self.volume_users(services, originals.source):
                    if other != sec.name:
                        problems.add(f"services.{other}.volumes", f"mounts '{originals.source}', which holds every secret of "
                                     f"the installation: only {sec.name} may")
            for recipient, volume in sorted(sec.recipients.items()):
                where = f"{at}.volumes"
                if recipient != "postgres" and recipient not in self.identities:
                    problems.add(where, f"{sec.out_dir}/{recipient}: '{recipient}' is not a broker identity "
                                 f"({IDENTITY_RS}: {', '.join(self.identities)}) nor postgres")
                if not volume:
                    problems.add(where, f"{sec.out_dir}/{recipient}: mount a named volume there")
                    continue
                m = next(m for m in mounts if m.source == volume)
                if m.read_only:
                    problems.add(where, f"{volume} is read-only here: {sec.name} writes into it")
                users = [n for n, _ in self.volume_users(services, volume) if n != sec.name]
                if not users:
                    problems.add(where, f"{volume} ({recipient}'s secrets) is mounted by no other service")
            for role in sec.roles:
                if not re.fullmatch(r"[a-z_][a-z0-9_]*", role):
                    problems.add(f"{at}.environment.POSTGRES_ROLES", f"'{role}' is not a plain role name")

    @staticmethod
    def creds_dir(eff: dict) -> str:
        """nats.creds_dir, empty meaning <data_dir>/creds (as Config::creds_dir has it)."""
        creds = str(get_dotted(eff, "nats.creds_dir") or "")
        if not creds:
            creds = str(PurePosixPath(str(get_dotted(eff, "data_dir") or "data")) / "creds")
        return str(PurePosixPath(creds))

    def creds_volume(self, at, sname, svc, identity, eff, services, problems) -> str | None:
        """Checks where `identity`'s seed comes from; returns the volume holding it."""
        creds = self.creds_dir(eff)
        mount = next((m for m in mounts_of(svc) if m.target == creds), None)
        if mount is None or mount.kind != "volume" or not mount.source:
            problems.add(f"{at}.volumes", f"nats.creds_dir {creds}: mount the volume with {identity}'s seed there (read-only)")
            return None
        if not mount.read_only:
            problems.add(f"{at}.volumes", f"mount {mount.source} read-only (:ro): {sname} only reads its seed")
        if not self.secrets:
            return mount.source  # check_secrets_services says that nobody makes the seeds
        writers = self.secrets_writing(mount.source)
        if not writers:
            problems.add(f"{at}.volumes", f"{mount.source}: no secrets one-shot fills it ({SECRETS_SCRIPT} fills the "
                         f"volume mounted at <OUT_DIR>/{identity})")
        deps = depends_healthy(svc)
        for sec, recipient in writers:
            if recipient != identity:
                problems.add(f"{at}.volumes", f"{mount.source} holds {recipient}'s seed, but {sname} connects as {identity}")
            if deps.get(sec.name) != "service_completed_successfully":
                problems.add(f"{at}.depends_on", f"{sec.name} (it makes the seed) must be waited for with "
                             "condition: service_completed_successfully")
        # Nobody of another identity may read it.
        owner = writers[0][1] if writers else identity
        for other, _m in self.volume_users(services, mount.source):
            if any(other == sec.name for sec in self.secrets):
                continue
            if self.identity_of(argv_of(services[other])) != owner:
                problems.add(f"services.{other}.volumes", f"mounts {mount.source}: it could read {owner}'s seed")
        return mount.source

    # -- the image built from the Dockerfile --

    def image_facts(self, at, build, problems) -> dict | None:
        if isinstance(build, str):
            context, dockerfile = build, "Dockerfile"
        else:
            context, dockerfile = build.get("context", "."), build.get("dockerfile", "Dockerfile")
        ctx = self.root / context
        if not ctx.is_dir():
            problems.add(f"{at}.build", f"build context {context} is not a folder of the repository")
            return None
        df = ctx / dockerfile
        if not df.is_file():
            problems.add(f"{at}.build", f"Dockerfile {self.rel(df)} does not exist")
            return None
        where = self.rel(df)
        stages = parse_dockerfile(df)
        if not stages:
            problems.add(where, "no FROM")
            return None
        ignore = DockerIgnore(ctx / ".dockerignore")
        final = stages[-1]
        stage_names = {s.name for s in stages if s.name}

        # COPY sources from the build context exist and are not left out of it.
        for stage in stages:
            for ins in stage.instructions:
                if ins.cmd not in ("COPY", "ADD"):
                    continue
                flags, sources, _dest = copy_parts(ins)
                if "from" in flags:
                    if flags["from"] not in stage_names and not re.match(r"^[\w./-]+:[\w.-]+$", flags["from"]):
                        problems.add(f"{where}:{ins.line}", f"COPY --from={flags['from']}: no such stage")
                    continue
                for src in sources:
                    if re.match(r"^https?://", src):
                        continue
                    rel = str(PurePosixPath(src))
                    if not (ctx / rel).exists():
                        problems.add(f"{where}:{ins.line}", f"COPY source {src} does not exist in the build context")
                    elif rel != "." and ignore.excluded(rel):
                        problems.add(f"{where}:{ins.line}", f"COPY source {src} is excluded by .dockerignore")

        # The workspace's sources are in the build context.
        needed = ["Cargo.toml", "Cargo.lock"]
        for pkg in self.packages:
            base = ctx / pkg.dir
            for p in sorted(base.rglob("*")):
                if p.is_file() and "target" not in p.relative_to(base).parts and p.suffix in (".rs", ".toml", ".sql"):
                    needed.append(str(p.relative_to(ctx)))
        for rel in needed:
            if ignore.excluded(rel):
                problems.add(f"{self.rel(ctx / '.dockerignore')}", f"excludes {rel}, which the build needs")
                break

        # The binaries: ARG OMS_BINARIES in a stage that runs cargo build.
        binaries: list[str] = []
        built_packages: set[str] | None = None
        bins_flag, bin_names = False, set()
        for stage in stages:
            args = stage_vars(stage, "ARG")
            if "OMS_BINARIES" in args:
                binaries = args["OMS_BINARIES"].split()
            for ins in stage.instructions:
                if ins.cmd != "RUN" or "cargo" not in ins.args:
                    continue
                words = shlex.split(ins.args)
                for i, w in enumerate(words[:-1]):
                    if w == "cargo" and words[i + 1] == "build":
                        j = i + 2
                        pk: set[str] = set()
                        while j < len(words) and words[j] not in ("&&", "||", ";"):
                            w2 = words[j]
                            if w2 in ("-p", "--package") and j + 1 < len(words):
                                pk.add(words[j + 1])
                                j += 1
                            elif w2.startswith("--package="):
                                pk.add(w2.split("=", 1)[1])
                            elif w2 == "--bins":
                                bins_flag = True
                            elif w2 == "--bin" and j + 1 < len(words):
                                bin_names.add(words[j + 1])
                                j += 1
                            j += 1
                        built_packages = pk or None
        if not binaries:
            problems.add(where, "no ARG OMS_BINARIES listing the binaries the image holds")
        if built_packages is None and not bin_names and not bins_flag and binaries:
            problems.add(where, "no `cargo build` step found")
        for b in binaries:
            if b not in self.binaries:
                problems.add(f"{where}: OMS_BINARIES", f"'{b}' is not a binary of the workspace ({', '.join(sorted(self.binaries))})")
                continue
            pkg = self.binaries[b].name
            if built_packages is not None and pkg not in built_packages:
                problems.add(f"{where}: cargo build", f"does not build package {pkg} (binary {b}); add -p {pkg}")
            if bin_names and b not in bin_names and not bins_flag:
                problems.add(f"{where}: cargo build", f"does not build binary {b}; add --bin {b}")
        for p in sorted(built_packages or ()):
            if p not in {pk.name for pk in self.packages}:
                problems.add(f"{where}: cargo build", f"-p {p}: no such workspace package")

        commands = set(binaries)
        config_files: dict[str, Path] = {}
        for ins in final.instructions:
            if ins.cmd not in ("COPY", "ADD"):
                continue
            flags, sources, dest = copy_parts(ins)
            if dest.startswith("/usr/local/bin/") and not dest.endswith("/"):
                commands.add(PurePosixPath(dest).name)
            if "from" not in flags and len(sources) == 1:
                config_files[dest] = ctx / sources[0]
        user = "root"
        for ins in final.instructions:
            if ins.cmd == "USER":
                user = ins.args.split(":", 1)[0].strip()
        return {
            "where": where,
            "commands": commands,
            "binaries": set(binaries),
            "env": stage_vars(final, "ENV"),
            "config_files": config_files,
            "dirs": stage_dirs(final),
            "user": user,
        }

    # -- a service of the OMS image --

    def effective_config(self, at, svc, facts, problems) -> dict:
        env = {**facts["env"], **env_of(svc)}
        eff: dict = {}
        for key, value in self.config.defaults.items():
            set_dotted(eff, key, value)
        cfg_path = env.get("OMS_CONFIG")
        if cfg_path:
            src = facts["config_files"].get(cfg_path)
            if src is None:
                problems.add(f"{at}.environment.OMS_CONFIG", f"{cfg_path} is not a file the image copies in ({facts['where']})")
            elif not src.is_file():
                problems.add(f"{at}.environment.OMS_CONFIG", f"{cfg_path} comes from {self.rel(src)}, which does not exist")
            else:
                toml = tomllib.loads(src.read_text(encoding="utf-8"))
                profile = env.get("OMS_PROFILE", "default")
                if profile not in toml and profile not in ("default", "global"):
                    problems.add(f"{at}.environment.OMS_PROFILE", f"profile '{profile}' has no table in {self.rel(src)}")
                for table in ("default", profile, "global"):
                    if isinstance(toml.get(table), dict):
                        eff = deep_merge(eff, toml[table])
        for k, v in env.items():
            key = self.config_key(k)
            if key and k[len(self.config.env_prefix) :].upper() not in self.config.env_ignored:
                set_dotted(eff, key, v)
        return eff

    def check_mount_points(self, at, svc, facts, problems):
        """A new named volume takes the owner of the image's folder it is mounted on."""
        user = facts["user"]
        for m in mounts_of(svc):
            if m.kind != "volume" or not m.source:
                continue
            owner = facts["dirs"].get(str(PurePosixPath(m.target)))
            if owner is None:
                problems.add(f"{at}.volumes", f"{m.target}: the image has no such folder ({facts['where']}: make it, "
                             f"owned by {user}), so a new volume '{m.source}' would be owned by root")
            elif owner != user:
                problems.add(f"{at}.volumes", f"{m.target} is owned by {owner} in the image ({facts['where']}), "
                             f"but the image runs as {user}")

    def check_script(self, at, svc, facts, problems):
        script = self.script_of(svc)
        if script is None:
            return  # check_scripts_mounted says why
        env = {**facts["env"], **env_of(svc)}
        for var in script.required:
            if var not in env:
                problems.add(f"{at}.environment", f"{var} is not set, but {script.path} requires it")
        for c in script.oms_commands:
            if c not in facts["commands"]:
                problems.add(f"{script.path}", f"runs '{c}', which is not a command of the image "
                             f"({', '.join(sorted(facts['commands']))})")
        for v in script.oms_vars:
            self.check_oms_var(f"{script.path}: {v}", v, problems)

    def check_oms_service(self, at, sname, svc, services, facts, problems):
        self.check_mount_points(at, svc, facts, problems)
        argv = argv_of(svc)
        if not argv:
            problems.add(f"{at}.command", "missing: name the binary to run (the image holds several)")
            return
        if argv[0] in SHELLS:
            self.check_script(at, svc, facts, problems)
            return
        binary = argv[0]
        if binary not in self.binaries:
            problems.add(f"{at}.command", f"'{binary}' is not a binary of the workspace ({', '.join(sorted(self.binaries))})")
            return
        if binary not in facts["binaries"]:
            problems.add(f"{at}.command", f"'{binary}' is not in the image: add it to ARG OMS_BINARIES in {facts['where']}")
        eff = self.effective_config(at, svc, facts, problems)
        pkg = self.binaries[binary]
        section = binary[len("oms-") :] if binary.startswith("oms-") else binary
        identity = self.identity_of(argv)
        is_service = section in self.config.service_sections
        deps = depends_healthy(svc)

        if is_service:
            # Health check: GET /readyz on the service's port, with a command the image has.
            port = get_dotted(eff, f"{section}.http_port")
            test = healthcheck_test(svc)
            if test is None:
                problems.add(f"{at}.healthcheck", f"missing: GET /readyz on port {port}")
            else:
                if test[0] == "CMD" and len(test) > 1 and test[1] not in facts["commands"]:
                    problems.add(f"{at}.healthcheck.test", f"'{test[1]}' is not a command of the image ({', '.join(sorted(facts['commands']))})")
                urls = [_URL_IN_TEST.search(t) for t in test[1:]]
                urls = [u for u in urls if u]
                if not urls:
                    problems.add(f"{at}.healthcheck.test", "names no http://host:port/path URL")
                for u in urls:
                    if str(u.group(2)) != str(port):
                        problems.add(f"{at}.healthcheck.test", f"asks port {u.group(2)}, but {sname} listens on {section}.http_port = {port}")
                    if (u.group(3) or "/") != "/readyz":
                        problems.add(f"{at}.healthcheck.test", f"asks {u.group(3) or '/'}, expected /readyz")

            # The edge (the HTTP API) is published on its port.
            if section == "edge":
                want = self.config.defaults.get("edge.http_port")
                pairs = published_ports(svc)
                if not any(str(t) == str(port) and p == want for p, t in pairs):
                    problems.add(f"{at}.ports", f"must publish the API: \"{want}:{port}\" (host {want} -> edge.http_port {port})")

            # The topology: streams, buckets and consumers exist before a service starts.
            provisioners = [n for n, s in services.items() if argv_of(s)[:1] == ["oms-provision"] and "topology" in argv_of(s)]
            if not provisioners:
                problems.add(f"{at}.depends_on", "no service runs `oms-provision topology`: nobody may create the "
                             f"streams, buckets and consumers {sname} needs but the provisioner")
            elif not any(deps.get(p) == "service_completed_successfully" for p in provisioners):
                problems.add(f"{at}.depends_on", f"{provisioners[0]} (oms-provision topology) must be waited for with "
                             f"condition: service_completed_successfully: {sname} is not ready before the topology exists")

        if identity is None:
            return  # a tool that does not connect to NATS
        if identity not in self.identities:
            problems.add(f"{at}.command", f"{binary} connects as '{identity}', which is not a broker identity "
                         f"({IDENTITY_RS}: {', '.join(self.identities)})")
        creds_volume = self.creds_volume(at, sname, svc, identity, eff, services, problems)

        # NATS: every seed is a nats node of this file, on its client port, waited for.
        nats_url = str(get_dotted(eff, "nats.url") or "")
        nodes = 0
        for seed in [s.strip() for s in nats_url.split(",") if s.strip()]:
            u = urllib.parse.urlsplit(seed if "://" in seed else f"nats://{seed}")
            host, p = u.hostname, url_port(u, 4222)
            target = services.get(host or "")
            if target is None:
                problems.add(f"{at}: nats.url", f"{seed}: '{host}' is not a service of this file")
                continue
            nodes += 1
            node_port = env_of(target).get("NATS_PORT", "4222")
            if str(p) != str(node_port):
                problems.add(f"{at}: nats.url", f"{seed}: {host} listens on NATS_PORT {node_port}")
            if deps.get(host) != "service_healthy":
                problems.add(f"{at}.depends_on", f"{host} (a NATS seed) must be waited for with condition: service_healthy")
        replicas = get_dotted(eff, "streams.replicas")
        if replicas is not None and nodes and str(replicas).isdigit() and int(replicas) > nodes:
            problems.add(f"{at}: streams.replicas", f"{replicas} replicas, but nats.url names {nodes} node(s)")

        if not is_service:
            return
        # SQL: a service with migrations gets a database of the postgres service, if there is one.
        has_sql = (self.root / pkg.dir / "migrations").is_dir()
        db_url = str(get_dotted(eff, f"{section}.database_url") or "")
        postgres_services = [n for n, s in services.items() if str(s.get("image", "")).split("/")[-1].startswith("postgres:")]
        if has_sql and postgres_services and not db_url.startswith(("postgres://", "postgresql://")):
            var = f"{self.config.env_prefix}{section.upper()}{self.config.env_split}DATABASE_URL"
            problems.add(f"{at}.environment", f"{sname} keeps SQL data: set {var}=postgres://... (service {postgres_services[0]})")
        if db_url.startswith(("postgres://", "postgresql://")):
            if not has_sql:
                problems.add(f"{at}: {section}.database_url", f"{sname} has no SQL store (no {pkg.dir}/migrations)")
            self.check_database_url(at, sname, section, identity, db_url, svc, services, deps, eff, creds_volume, problems)

    def check_database_url(self, at, sname, section, identity, url, svc, services, deps, eff, creds_volume, problems):
        u = urllib.parse.urlsplit(url)
        where = f"{at}: {section}.database_url"
        target = services.get(u.hostname or "")
        if target is None:
            problems.add(where, f"host '{u.hostname}' is not a service of this file")
            return
        if url_port(u, 5432) != 5432:
            problems.add(where, f"port {u.netloc.rsplit(':', 1)[-1]}: the postgres service listens on 5432")
        if deps.get(u.hostname) != "service_healthy":
            problems.add(f"{at}.depends_on", f"{u.hostname} (its database) must be waited for with condition: service_healthy")
        init = self.postgres_facts(target)
        db = u.path.lstrip("/")
        user = urllib.parse.unquote(u.username or "")
        if not db:
            problems.add(where, "names no database")
        elif db not in init.dbs:
            problems.add(where, f"database '{db}' is not created by the postgres service (creates: {', '.join(sorted(init.dbs))})")
        elif init.owners.get(db) != user:
            problems.add(where, f"database '{db}' is owned by {init.owners.get(db, 'the superuser')}, not by {user or '(no user)'}: "
                         "each service's role owns its database")
        if user not in init.roles:
            problems.add(where, f"user '{user}' is not created by the postgres service (roles: {', '.join(sorted(init.roles))})")
        # The password: from the pgpass file the secrets one-shot writes for this identity.
        want_role = f"oms_{identity}"
        if user and user != want_role:
            problems.add(where, f"user '{user}': {SECRETS_SCRIPT} writes {sname}'s pgpass for the role {want_role}")
        for other, osvc in services.items():
            if other == sname or "build" not in osvc:
                continue
            for k, v in env_of(osvc).items():
                ou = urllib.parse.urlsplit(v) if v.startswith(("postgres://", "postgresql://")) else None
                if ou and ou.hostname == u.hostname and urllib.parse.unquote(ou.username or "") == user and user:
                    problems.add(where, f"user '{user}' is also {other}'s: one role per service")
        for sec in self.secrets:
            if creds_volume and sec.recipients.get(identity) == creds_volume and want_role not in sec.roles:
                problems.add(f"services.{sec.name}.environment.POSTGRES_ROLES", f"lacks {want_role}: {sname} would get no password")
        creds = self.creds_dir(eff)
        pgpass = env_of(svc).get("PGPASSFILE")
        if not pgpass:
            problems.add(f"{at}.environment", f"set PGPASSFILE={creds}/pgpass: {sname}'s database password is there")
        elif str(PurePosixPath(pgpass)) != f"{creds}/pgpass":
            problems.add(f"{at}.environment.PGPASSFILE", f"{pgpass}: {SECRETS_SCRIPT} writes it to {creds}/pgpass")

    def postgres_facts(self, svc) -> InitSql:
        env = env_of(svc)
        superuser = env.get("POSTGRES_USER", "postgres")
        inits = [
            self.root / m.source
            for m in mounts_of(svc)
            if m.kind == "bind" and m.target.startswith("/docker-entrypoint-initdb.d/") and m.source.endswith(".sql")
        ]
        init = sql_init_facts([p for p in inits if p.is_file()])
        init.dbs.add(env.get("POSTGRES_DB", superuser))
        init.dbs.add("postgres")
        init.roles.setdefault(superuser, "SUPERUSER LOGIN")
        return init

    def check_postgres(self, at, sname, svc, problems):
        init = self.postgres_facts(svc)
        env = env_of(svc)
        for m in mounts_of(svc):
            if m.kind == "bind" and m.target.startswith("/docker-entrypoint-initdb.d/") and not m.read_only:
                problems.add(f"{at}.volumes", f"mount {m.source} read-only (:ro)")
        test = healthcheck_test(svc) or []
        for flag, known, what in (("-U", init.roles, "role"), ("-d", init.dbs, "database")):
            if flag in test:
                i = test.index(flag)
                if i + 1 < len(test) and test[i + 1] not in known:
                    problems.add(f"{at}.healthcheck.test", f"{flag} {test[i + 1]}: no such {what} is created")
        for role in init.literal_passwords:
            problems.add(f"{at}.volumes", f"the init SQL sets the password of '{role}' in the repository: read it "
                         f"from the file {SECRETS_SCRIPT} makes")
        # The passwords: the superuser's from POSTGRES_PASSWORD_FILE, in the volume the secrets
        # one-shot fills for postgres; every role that logs in gets one.
        superuser = env.get("POSTGRES_USER", "postgres")
        pw_file = env.get("POSTGRES_PASSWORD_FILE")
        if not pw_file:
            if not env.get("POSTGRES_PASSWORD"):
                problems.add(f"{at}.environment", "set POSTGRES_PASSWORD_FILE to the superuser's password in the volume "
                             f"{SECRETS_SCRIPT} fills for postgres")
            return
        folder = str(PurePosixPath(pw_file).parent)
        mount = next((m for m in mounts_of(svc) if m.target == folder), None)
        if mount is None or mount.kind != "volume" or not mount.source:
            problems.add(f"{at}.environment.POSTGRES_PASSWORD_FILE", f"{pw_file}: mount the volume with the database "
                         f"passwords at {folder}")
            return
        if not mount.read_only:
            problems.add(f"{at}.volumes", f"mount {mount.source} read-only (:ro)")
        if PurePosixPath(pw_file).name != f"{superuser}.password":
            problems.add(f"{at}.environment.POSTGRES_PASSWORD_FILE", f"{pw_file}: {SECRETS_SCRIPT} names it {superuser}.password")
        if not self.secrets:
            return  # check_secrets_services says that nobody makes the passwords
        writers = self.secrets_writing(mount.source)
        if not writers:
            problems.add(f"{at}.volumes", f"{mount.source}: no secrets one-shot fills it (the volume at <OUT_DIR>/postgres)")
        for sec, recipient in writers:
            if recipient != "postgres":
                problems.add(f"{at}.volumes", f"{mount.source} holds {recipient}'s secrets, not the database passwords")
            if depends_healthy(svc).get(sec.name) != "service_completed_successfully":
                problems.add(f"{at}.depends_on", f"{sec.name} (it makes the passwords) must be waited for with "
                             "condition: service_completed_successfully")
            for role, rest in sorted(init.roles.items()):
                logs_in = role == superuser or (re.search(r"\bLOGIN\b", rest, flags=re.I) and not re.search(r"\bNOLOGIN\b", rest, flags=re.I))
                if logs_in and role not in sec.roles:
                    problems.add(f"services.{sec.name}.environment.POSTGRES_ROLES", f"lacks {role}: that role would have no password")
            for role in sec.roles:
                if role not in init.roles:
                    problems.add(f"services.{sec.name}.environment.POSTGRES_ROLES", f"{role} is no role of {sname}")

    # -- nats --

    def check_nats_node(self, at, sname, svc, problems):
        env = env_of(svc)
        cmd = command_of(svc)
        image = str(svc.get("image", ""))
        tag = image.rsplit(":", 1)[-1]
        version = re.match(r"^(\d+\.\d+(\.\d+)?)", tag)
        if self.nats_version and version and version.group(1) != self.nats_version:
            problems.add(f"{at}.image", f"{image}: nats-server {version.group(1)}, but {LIB_SH} pins {self.nats_version}")
        conf = None
        for i, w in enumerate(cmd):
            if w in ("-c", "--config") and i + 1 < len(cmd):
                conf = cmd[i + 1]
            elif w.startswith("--config="):
                conf = w.split("=", 1)[1]
        if conf is None:
            problems.add(f"{at}.command", "no --config: the node would start without the generated authorization "
                         "and accept anonymous clients")
            return
        mounts = mounts_of(svc)
        template = None
        direct = next((m for m in mounts if m.target == conf), None)
        if direct is not None and direct.kind == "bind":
            problems.add(f"{at}.command", f"--config {conf} is {direct.source} itself, without the generated "
                         "authorization: the node would accept anonymous clients; start it from the secrets "
                         "one-shot's NATS_SERVER_CONFIG")
            template = direct
        else:
            folder = str(PurePosixPath(conf).parent)
            mount = next((m for m in mounts if m.target == folder), None)
            sec = next((x for x in self.secrets if str(PurePosixPath(x.env.get("NATS_SERVER_CONFIG", ""))) == conf), None)
            if sec is None:
                problems.add(f"{at}.command", f"--config {conf}: no secrets one-shot writes it (its NATS_SERVER_CONFIG)")
                return
            sec_mount = next((m for m in mounts_of(self._services[sec.name]) if m.target == folder), None)
            if mount is None or mount.kind != "volume" or sec_mount is None or mount.source != sec_mount.source:
                problems.add(f"{at}.volumes", f"mount the volume {sec.name} writes {conf} into at {folder}, "
                             "the same folder as there (the include in it is relative)")
            elif not mount.read_only:
                problems.add(f"{at}.volumes", f"mount {mount.source} read-only (:ro)")
            if depends_healthy(svc).get(sec.name) != "service_completed_successfully":
                problems.add(f"{at}.depends_on", f"{sec.name} (it writes {conf}) must be waited for with "
                             "condition: service_completed_successfully")
            base = str(PurePosixPath(sec.env.get("NATS_BASE_CONFIG", "")))
            template = next((m for m in mounts if m.target == base), None)
            if template is None or template.kind != "bind":
                problems.add(f"{at}.volumes", f"{conf} includes {base} (NATS_BASE_CONFIG of {sec.name}): "
                             "mount the repository's config template there")
                return
        if not template.read_only:
            problems.add(f"{at}.volumes", f"mount {template.source} read-only (:ro)")
        path = self.root / template.source
        if not path.is_file():
            return  # reported by check_mounts
        text = re.sub(r"#[^\n]*", "", path.read_text(encoding="utf-8"))
        for var in sorted(set(re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", text))):
            if var not in env:
                problems.add(f"{at}.environment", f"{var} is not set, but {template.source} uses ${var}")
        store = env.get("NATS_STORE_DIR")
        if store and not any(m.kind == "volume" and m.source and m.target == store for m in mounts):
            problems.add(f"{at}.volumes", f"NATS_STORE_DIR {store} is not a named volume: the JetStream store would not persist")
        http = env.get("NATS_HTTP_PORT")
        for t in (healthcheck_test(svc) or [])[1:]:
            u = _URL_IN_TEST.search(t)
            if u and http and u.group(2) != http:
                problems.add(f"{at}.healthcheck.test", f"asks port {u.group(2)}, but NATS_HTTP_PORT is {http}")

    # -- one-shots --

    def check_one_shots(self, services, problems):
        awaited = {d for s in services.values() for d, c in depends_healthy(s).items() if c == "service_completed_successfully"}
        for sname, svc in services.items():
            if sname in awaited and not is_one_shot(svc):
                problems.add(f"services.{sname}.restart", f"'{svc.get('restart')}': others wait for it to end "
                             "(service_completed_successfully), so it must not be restarted: restart: \"no\"")
            if "build" in svc and restart_policy(svc) == "no" and not svc.get("profiles") and sname not in awaited:
                problems.add(f"services.{sname}", "a one-shot nobody waits for (service_completed_successfully): "
                             "`docker compose up --wait` would wait for it to keep running")

    def check_cluster(self, services, problems):
        nodes = {
            n: env_of(s)
            for n, s in services.items()
            if str(s.get("image", "")).split("/")[-1].startswith("nats:") and "NATS_SERVER_NAME" in env_of(s)
        }
        names: dict[str, str] = {}
        for n, env in nodes.items():
            other = names.get(env["NATS_SERVER_NAME"])
            if other:
                problems.add(f"services.{n}.environment.NATS_SERVER_NAME", f"'{env['NATS_SERVER_NAME']}' is also the name of {other}")
            names[env["NATS_SERVER_NAME"]] = n
            routes = {k: v for k, v in env.items() if re.fullmatch(r"NATS_ROUTE_\d+", k)}
            routed = set()
            for k, v in sorted(routes.items()):
                u = urllib.parse.urlsplit(v)
                if u.scheme not in ("nats-route", "nats"):
                    problems.add(f"services.{n}.environment.{k}", f"{v}: expected nats-route://host:port")
                target = nodes.get(u.hostname or "")
                if target is None:
                    problems.add(f"services.{n}.environment.{k}", f"{v}: '{u.hostname}' is not a nats node of this file")
                    continue
                routed.add(u.hostname)
                if str(url_port(u, 6222)) != target.get("NATS_CLUSTER_PORT", "6222"):
                    problems.add(f"services.{n}.environment.{k}", f"{v}: {u.hostname} has NATS_CLUSTER_PORT {target.get('NATS_CLUSTER_PORT')}")
            missing = set(nodes) - routed - {n}
            if routes and missing:
                problems.add(f"services.{n}.environment", f"no NATS_ROUTE_* to {', '.join(sorted(missing))}")


# ---------------------------------------------------------------------------------------------
# Self-test: broken copies of compose.yaml must fail, each with a message naming the fault.


def _svc(doc, name):
    return doc["services"][name]


def _set_test_url(doc, name, url):
    _svc(doc, name)["healthcheck"]["test"] = ["CMD", "oms-healthcheck", url]


MUTATIONS = [
    ("misspelt binary", "oms-custmer", lambda d: _svc(d, "customer").update(command=["oms-custmer"])),
    ("health check on another service's port", "listens on customer.http_port = 8091",
     lambda d: _set_test_url(d, "customer", "http://127.0.0.1:8092/readyz")),
    ("health check on the wrong path", "expected /readyz", lambda d: _set_test_url(d, "order", "http://127.0.0.1:8094/healthz")),
    ("health check with a missing tool", "'curl' is not a command of the image",
     lambda d: _svc(d, "payment")["healthcheck"].update(test=["CMD", "curl", "-f", "http://127.0.0.1:8093/readyz"])),
    ("unknown OMS_ variable", "customer.databse_url",
     lambda d: _svc(d, "customer")["environment"].update(OMS_CUSTOMER__DATABSE_URL="postgres://oms_customer@postgres:5432/oms_customer")),
    ("unknown config section", "no config key `shipping.http_port`",
     lambda d: _svc(d, "edge")["environment"].update(OMS_SHIPPING__HTTP_PORT="1")),
    ("port moved without its health check", "listens on inventory.http_port = 9092",
     lambda d: _svc(d, "inventory")["environment"].update(OMS_INVENTORY__HTTP_PORT="9092")),
    ("edge not published", "must publish the API", lambda d: _svc(d, "edge").pop("ports")),
    ("missing mounted file", "nats-cluster.cnf",
     lambda d: _svc(d, "nats-2").update(volumes=["./nats-cluster.cnf:/etc/nats/nats-cluster.conf:ro", "nats-auth:/nats-auth:ro", "nats-2:/data"])),
    ("missing build context", "build context ./nope", lambda d: _svc(d, "order").update(build="./nope")),
    ("undeclared volume", "'nats-9' is not declared",
     lambda d: _svc(d, "nats-3").update(volumes=["./nats-cluster.conf:/etc/nats/nats-cluster.conf:ro", "nats-auth:/nats-auth:ro", "nats-9:/data"])),
    ("template variable not set", "NATS_CLUSTER_PORT is not set", lambda d: _svc(d, "nats-1")["environment"].pop("NATS_CLUSTER_PORT")),
    ("route to no node", "'nats-4' is not a nats node",
     lambda d: _svc(d, "nats-1")["environment"].update(NATS_ROUTE_3="nats-route://nats-4:6222")),
    ("database not created", "database 'oms_orders'",
     lambda d: _svc(d, "order")["environment"].update(OMS_ORDER__DATABASE_URL="postgres://oms_order@postgres:5432/oms_orders")),
    ("password in a database URL", "a password in a URL",
     lambda d: _svc(d, "inventory")["environment"].update(OMS_INVENTORY__DATABASE_URL="postgres://oms_inventory:x@postgres:5432/oms_inventory")),
    ("two services, one role", "one role per service",
     lambda d: _svc(d, "inventory")["environment"].update(OMS_INVENTORY__DATABASE_URL="postgres://oms_customer@postgres:5432/oms_inventory")),
    ("database password not in reach", "set PGPASSFILE=/creds/pgpass", lambda d: _svc(d, "order")["environment"].pop("PGPASSFILE")),
    ("SQL service on SQLite", "set OMS_ORDER__DATABASE_URL", lambda d: _svc(d, "order")["environment"].pop("OMS_ORDER__DATABASE_URL")),
    ("database not waited for", "postgres (its database) must be waited for",
     lambda d: _svc(d, "customer")["depends_on"].pop("postgres")),
    ("dependency on no service", "'natz-1' is not a service",
     lambda d: _svc(d, "payment").update(depends_on={"natz-1": {"condition": "service_healthy"}})),
    ("schema: unknown key", "services.edge: unknown key 'helthcheck'", lambda d: _svc(d, "edge").update(helthcheck={})),
    ("schema: bad duration", "'5 seconds'", lambda d: _svc(d, "edge")["healthcheck"].update(interval="5 seconds")),
    ("more replicas than nodes", "3 replicas, but nats.url names 1 node",
     lambda d: _svc(d, "payment")["environment"].update(OMS_NATS__URL="nats://nats-1:4222")),
    # Identities and secrets.
    ("anonymous nats node", "accept anonymous clients",
     lambda d: _svc(d, "nats-1").update(command=["--config", "/etc/nats/nats-cluster.conf"])),
    ("node config nobody writes", "no secrets one-shot writes it",
     lambda d: _svc(d, "nats-2").update(command=["--config", "/nats-auth/other.conf"])),
    ("another identity's seed", "it could read payment's seed",
     lambda d: _svc(d, "customer").update(volumes=["creds-payment:/creds:ro"])),
    ("seed volume writable", "read-only (:ro): order only reads its seed", lambda d: _svc(d, "order").update(volumes=["creds-order:/creds"])),
    ("no seed", "nats.creds_dir /creds: mount the volume with inventory's seed", lambda d: _svc(d, "inventory").update(volumes=[])),
    ("secret in the file", "a secret in compose.yaml",
     lambda d: _svc(d, "edge")["environment"].update(OMS_AUTH__HS256_SECRET="0123456789abcdef0123456789abcdef")),
    ("superuser password in the file", "POSTGRES_PASSWORD: a secret in compose.yaml",
     lambda d: _svc(d, "postgres")["environment"].update(POSTGRES_PASSWORD="postgres")),
    ("superuser password from elsewhere", "mount the volume with the database passwords at /run/elsewhere",
     lambda d: _svc(d, "postgres")["environment"].update(POSTGRES_PASSWORD_FILE="/run/elsewhere/postgres.password")),
    ("service before the topology", "is not ready before the topology exists", lambda d: _svc(d, "customer")["depends_on"].pop("provision")),
    ("seed before it is made", "(it makes the seed) must be waited for", lambda d: _svc(d, "order")["depends_on"].pop("secrets")),
    ("one-shot that restarts", "must not be restarted", lambda d: _svc(d, "provision").update(restart="unless-stopped")),
    ("one-shot nobody waits for", "a one-shot nobody waits for", lambda d: _svc(d, "payment").update(restart="no")),
    ("script variable not set", "NATS_SERVER_CONFIG is not set, but compose/make-secrets.sh requires it",
     lambda d: _svc(d, "secrets")["environment"].pop("NATS_SERVER_CONFIG")),
    ("script not mounted", "bash /oms/make-secrets.sh: no file of the repository is mounted there",
     lambda d: _svc(d, "secrets")["volumes"].remove("./compose/make-secrets.sh:/oms/make-secrets.sh:ro")),
    ("secrets on the network", "needs no network", lambda d: _svc(d, "secrets").pop("network_mode")),
    ("originals shared", "holds every secret of the installation",
     lambda d: _svc(d, "edge").update(volumes=["creds-edge:/creds:ro", "secrets:/oms/secrets:ro"])),
    ("recipient that is no identity", "'custmer' is not a broker identity",
     lambda d: _svc(d, "secrets").update(volumes=[v.replace("/oms/out/customer", "/oms/out/custmer") for v in _svc(d, "secrets")["volumes"]])),
    ("role without a password", "lacks oms_order",
     lambda d: _svc(d, "secrets")["environment"].update(POSTGRES_ROLES="postgres oms_customer oms_inventory")),
]


# Broken copies of the project's other files: (case, expected text, file, old text, new text).
FILE_MUTATIONS = [
    ("image without a binary", "'oms-dql' is not a binary", "Dockerfile", "oms-order oms-dlq", "oms-order oms-dql"),
    ("binary not built", "does not build package oms-ops", "Dockerfile", " -p oms-ops", ""),
    ("config file not in the image", "/app/oms.toml is not a file the image copies in", "Dockerfile",
     "COPY oms.toml /app/oms.toml", "COPY oms.toml /etc/oms.toml"),
    ("health check script left out of the context", "compose/oms-healthcheck.sh is excluded by .dockerignore",
     ".dockerignore", "!compose/oms-healthcheck.sh", ""),
    ("sources left out of the context", "which the build needs", ".dockerignore", "\nscripts\n", "\nscripts\n**/migrations\n"),
    ("renamed crate", "'oms-customer' is not a binary", "customer/Cargo.toml", 'name = "oms-customer"', 'name = "oms-customers"'),
    ("init SQL missing", "compose/postgres-init.sql does not exist", "compose/postgres-init.sql", None, None),
    ("database no longer created", "database 'oms_inventory' is not created", "compose/postgres-init.sql",
     "CREATE DATABASE oms_inventory OWNER oms_inventory;", ""),
    ("password written in the init SQL", "sets the password of 'oms_order' in the repository", "compose/postgres-init.sql",
     "CREATE ROLE oms_order LOGIN PASSWORD :'order_pw';", "CREATE ROLE oms_order LOGIN PASSWORD 'oms';"),
    ("secrets script runs a missing binary", "runs 'oms-provison'", "compose/make-secrets.sh",
     "oms-provision creds --base", "oms-provison creds --base"),
    ("secrets script sets an unknown OMS_ variable", "no config key `nats.cred_dir`", "compose/make-secrets.sh",
     "OMS_NATS__CREDS_DIR=", "OMS_NATS__CRED_DIR="),
    ("mount point not in the image", "/creds: the image has no such folder", "Dockerfile",
     "0700 /creds /oms/secrets", "0700 /oms/secrets"),
    ("mount point owned by root", "/nats-auth is owned by root in the image", "Dockerfile",
     "install -d -o oms -g oms -m 0755 /data /nats-auth", "install -d -m 0755 /data /nats-auth"),
    ("identity renamed", "'operator' is not a broker identity", "shared/topology/src/identity.rs",
     'Identity::Operator => "operator"', 'Identity::Operator => "operators"'),
    ("config key renamed", "no config key `customer.database_url`", "shared/config/src/lib.rs",
     "pub database_url: String,", "pub db_url: String,"),
    ("default port changed", "listens on payment.http_port = 9093", "shared/config/src/lib.rs", "payment: service(8093)", "payment: service(9093)"),
    ("docker profile on one node", "3 replicas, but nats.url names 1 node", "oms.toml",
     'url = "nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4222"', 'url = "nats://nats-1:4222"'),
    ("nats image of another version", "but scripts/lib.sh pins", "scripts/lib.sh",
     'OMS_NATS_SERVER_VERSION="', 'OMS_NATS_SERVER_VERSION="9.'),
]


def _expect(name: str, expected: str, found: list[str]) -> bool:
    if any(expected in p for p in found):
        return True
    print(f"  FAIL {name}: expected a problem mentioning {expected!r}, got:", *(found or ["(none)"]), sep="\n      ")
    return False


def self_test(checker: Checker, doc: dict, schema: dict) -> int:
    import shutil
    import tempfile

    passed = failed = 0
    base = checker.check(copy.deepcopy(doc), schema)
    if base:
        print("self-test: the real file must pass first:", *base.items, sep="\n  ")
        return 1
    for name, expected, mutate in MUTATIONS:
        broken = copy.deepcopy(doc)
        try:
            mutate(broken)
        except (KeyError, TypeError) as e:
            print(f"  FAIL {name}: compose.yaml no longer has what this case changes ({e!r})")
            failed += 1
            continue
        ok = _expect(name, expected, checker.check(broken, schema).items)
        passed, failed = passed + ok, failed + (not ok)

    with tempfile.TemporaryDirectory(prefix="oms-compose-check.") as tmp:
        copy_root = Path(tmp) / "repo"
        shutil.copytree(
            checker.root, copy_root, symlinks=True,
            ignore=shutil.ignore_patterns(".git", ".tools", "target", "data", "*.db", "*.db-*", "__pycache__"),
        )
        for name, expected, rel, old, new in FILE_MUTATIONS:
            path = copy_root / rel
            original = path.read_text(encoding="utf-8") if path.is_file() else None
            if original is None or (old is not None and old not in original):
                print(f"  FAIL {name}: {rel} no longer has {old!r}; update this case")
                failed += 1
                continue
            if old is None:
                path.unlink()
            else:
                path.write_text(original.replace(old, new, 1), encoding="utf-8")
            try:
                found = Checker(copy_root).check(copy.deepcopy(doc), schema).items
            except SystemExit as e:  # a file the check parses became unreadable
                found = [str(e)]
            finally:
                path.write_text(original, encoding="utf-8")
            ok = _expect(name, expected, found)
            passed, failed = passed + ok, failed + (not ok)
        leftover = Checker(copy_root).check(copy.deepcopy(doc), schema).items
        if leftover:
            print("  FAIL the restored copy does not pass:", *leftover, sep="\n      ")
            failed += 1

    print(f"compose-check self-test: {passed} passed, {failed} failed")
    return 1 if failed else 0


# ---------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--compose", type=Path, default=ROOT / "compose.yaml", help="file to check (default: compose.yaml)")
    ap.add_argument("--schema", type=Path, default=SCHEMA, help="JSON schema (default: ci/compose-spec.json)")
    ap.add_argument("--self-test", action="store_true", help="also check that broken copies of the file fail")
    opts = ap.parse_args()

    schema = json.loads(opts.schema.read_text(encoding="utf-8"))
    name = opts.compose.name if opts.compose.resolve().parent == ROOT else str(opts.compose)
    try:
        doc = load_compose(opts.compose)
    except yaml.YAMLError as e:
        print(f"{name}: not valid YAML: {e}")
        return 1
    checker = Checker(ROOT)
    problems = checker.check(doc, schema, name)
    if problems:
        for p in problems.items:
            print(f"{name}: {p}")
        print(f"{name}: {len(problems.items)} problem(s)")
        return 1
    oms = [n for n, s in doc["services"].items() if "build" in s]
    print(
        f"{name}: valid (Compose Specification schema) and consistent with the project: "
        f"{len(doc['services'])} services ({', '.join(oms)} from the Dockerfile)"
    )
    if opts.self_test:
        return self_test(checker, doc, schema)
    return 0


if __name__ == "__main__":
    sys.exit(main())

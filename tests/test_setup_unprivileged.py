"""./run.sh's set-up works for a user who is not root, with PATH limited to the README's prerequisites.

``scripts/setup.sh`` (what ./run.sh runs) is run for real, as an unprivileged user (``pipeline-test``, a system user
created if missing; when the suite itself does not run as root, as the current user), on a copy of the repository's
files that the user owns, with PATH holding only

- the README's four tools: ``python3.11``, ``java`` (a JDK 17), ``mvn``, ``go``, and
- the base system: the programs of Debian's *Essential* packages (coreutils, bash, sed, grep, findutils, tar, ...),
  which every Debian system has and no README lists,

so npm, apt-get, sudo, chromium and a C compiler are out of reach (asserted). The run is isolated from the network
when the machine allows (a network namespace of its own), and ``setpriv --no-new-privs`` means that no set-uid
program could give it root back.

Choice: the real set-up, every step really executed by that user, fed from local seeds instead of the registries,
because downloading ~700 MB of wheels, the jars and the Go modules would take minutes and depend on the network:

- Python: a wheelhouse of exactly the demo's packages (``pip wheel -c constraints.txt '.[flink,embedded]'``, built
  once per interpreter + pyproject.toml + constraints.txt, from pip's cache, in root's ``~/.cache`` beside it, so a
  fresh clone such as CI's reuses it: the first build adds about 30 s), given to pip with
  ``PIP_NO_INDEX``/``PIP_FIND_LINKS``: the user's pip creates the venv, resolves against constraints.txt, installs
  every wheel and builds the project in editable mode;
- Maven: a copy, owned by the user, of the local Maven repository that root's set-up filled, used offline
  (``settings.xml`` in the user's home): the user's Maven resolves and copies the jars and compiles, unit-tests and
  packages the job's format;
- Go: root's module download cache as a ``file://`` module proxy (the user's go downloads, verifies and extracts
  every module into its own module cache) and a hard-linked view of root's build cache (the user's go reuses the
  compiled packages, possible because set-up builds with ``-trimpath`` and ``CGO_ENABLED=0``, and links the binary).
  Compiling versitygw from nothing takes about 3 minutes on this machine's 2 cores: that is the one thing not redone.

The lighter alternatives were rejected: seeding the copy's ``.venv``/``.cache`` would skip the very steps under test,
and checking only the prerequisite messages would not show that a non-root user can install anything.
The test runs after root's set-up (./test.sh runs it first), whose caches are the seeds. Measured here: set-up as the
user about 70 s (pip 48 s, Maven 12 s, Go 8 s), the whole module about 80 s (plus ~30 s the first time on a machine,
for the wheelhouse).
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from base.config import PROJECT_ROOT

pytestmark = pytest.mark.skipif(not (PROJECT_ROOT / ".git").exists(), reason="not a git checkout: no file list")

TEST_USER = "pipeline-test"
README_TOOLS = ("python3.11", "java", "mvn", "go")
# What the demo's set-up must not reach (most of them are on this machine).
UNREACHABLE = ("npm", "node", "apt-get", "apt", "sudo", "chromium", "gcc", "cc", "pip", "pip3", "playwright")
# Per machine, not per checkout (CI runs in a fresh clone): beside pip's own cache, one wheelhouse at a time.
SEED = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "user-actions-pipeline" / "setup-seed"
SETUP_TIMEOUT = 600


@dataclass(frozen=True)
class Account:
    uid: int
    gid: int
    name: str


@dataclass
class Run:
    account: Account
    base: Path  # the account's: repo/, home/, m2/ its own; bin/ (its PATH), wheels/, goproxy/ root's, read-only
    repo: Path
    env: dict[str, str]
    netns: bool
    result: subprocess.CompletedProcess
    seconds: float
    seeding_seconds: float

    def run(self, argv: list[str], **kw) -> subprocess.CompletedProcess:
        return as_user(self.account, argv, self.env, self.repo, netns=self.netns, **kw)


LOOPBACK_UP = '/usr/sbin/ip link set lo up && exec "$@"'


def as_user(account: Account, argv: list[str], env: dict[str, str], cwd: Path, netns: bool = False,
            timeout: float = 120) -> subprocess.CompletedProcess:
    """``argv`` as ``account`` with exactly ``env`` (nothing inherited), unable to regain privileges."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        prefix = ["/usr/bin/setpriv", f"--reuid={account.uid}", f"--regid={account.gid}", "--clear-groups",
                  "--no-new-privs", "--"]
        if netns:
            # A new network namespace starts with loopback down: bring it up (as root, before dropping privileges)
            # so that what set-up runs on 127.0.0.1 (the format module's metrics reporter test) works as it would
            # on a machine without network, while nothing beyond loopback is reachable.
            prefix = ["/usr/bin/unshare", "--net", "--", "/bin/sh", "-c", LOOPBACK_UP, "sh", *prefix]
    return subprocess.run([*prefix, *argv], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def account() -> Account:
    if os.geteuid() != 0:  # the suite itself is unprivileged: that user is the one to test with
        me = pwd.getpwuid(os.geteuid())
        return Account(me.pw_uid, me.pw_gid, me.pw_name)
    if not Path("/usr/bin/setpriv").exists():
        pytest.skip("running as root without setpriv (util-linux): cannot run set-up as an unprivileged user")
    try:
        entry = pwd.getpwnam(TEST_USER)
    except KeyError:
        made = subprocess.run(["useradd", "--system", "--no-create-home", "--user-group", "--shell",
                               "/usr/sbin/nologin", TEST_USER], capture_output=True, text=True)
        try:
            entry = pwd.getpwnam(TEST_USER)  # made now, or by a concurrent run
        except KeyError:
            pytest.skip(f"cannot create the unprivileged user {TEST_USER}: {made.stderr.strip()}")
    assert entry.pw_uid != 0
    return Account(entry.pw_uid, entry.pw_gid, entry.pw_name)


def repository_files() -> list[str]:
    """Tracked plus untracked-not-ignored files: what a clone of the working tree would hold."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=PROJECT_ROOT, capture_output=True, check=True).stdout
    return [p for p in out.decode().split("\0") if p and (PROJECT_ROOT / p).is_file()]


def link_tree(src: Path, dst: Path) -> None:
    """A view of ``src`` at ``dst``: hard links where the file system allows, copies otherwise (nothing is written
    through them: every file they share is read-only to the unprivileged user)."""
    if subprocess.run(["cp", "-al", str(src), str(dst)], capture_output=True).returncode != 0:
        shutil.rmtree(dst, ignore_errors=True)
        subprocess.run(["cp", "-a", str(src), str(dst)], check=True)


def essential_programs() -> dict[str, Path]:
    """name -> program of Debian's Essential packages in /usr/bin and /bin (the base system)."""
    if not shutil.which("dpkg-query"):
        pytest.skip("not a Debian system: no list of the base system's programs to limit PATH to")
    packages = subprocess.run(["dpkg-query", "-Wf", "${Package} ${Essential}\n"], capture_output=True, text=True,
                              check=True).stdout.split("\n")
    names = [line.split()[0] for line in packages if line.endswith(" yes")]
    listed = subprocess.run(["dpkg", "-L", *names], capture_output=True, text=True).stdout.split("\n")
    programs = {}
    for entry in listed:
        path = Path(entry)
        if str(path.parent) in ("/usr/bin", "/bin") and path.is_file() and os.access(path, os.X_OK):
            programs.setdefault(path.name, path)
    return programs


def python311_for(acct: Account) -> Path:
    """A Python 3.11 that ``acct`` can run (root's own may live under /root, out of its reach)."""
    candidates = []
    for name in ("python3.11", "python3"):
        found = shutil.which(name)
        if found:
            real = subprocess.run([found, "-c", "import sys; print(sys.executable)"], capture_output=True,
                                  text=True).stdout.strip()
            candidates += [Path(real)] if real else []
    candidates += [Path("/usr/bin/python3.11"), Path("/usr/local/bin/python3.11")]
    # Readable by the user, whole (its standard library at its prefix), with venv: not merely executable.
    probe = ("import os, sys, venv, ensurepip; sys.exit(sys.version_info[:2] != (3, 11) or not "
             "os.access(sys.executable, os.R_OK) or not os.path.isfile(os.path.join(sys.prefix, 'lib', 'python3.11', "
             "'os.py')))")
    for candidate in candidates:
        if candidate.exists() and as_user(acct, [str(candidate), "-c", probe], {"PATH": "/usr/bin:/bin"},
                                          Path("/")).returncode == 0:
            return candidate
    pytest.skip(f"no Python 3.11 with venv that {acct.name} may run (tried {', '.join(map(str, candidates))})")


def limited_path(bin_dir: Path, python: Path) -> None:
    """bin_dir: symlinks to the base system's programs and to exactly the README's four tools."""
    bin_dir.mkdir()
    for name, program in essential_programs().items():
        (bin_dir / name).symlink_to(program.resolve())
    (bin_dir / "python3.11").symlink_to(python)
    for tool in README_TOOLS[1:]:
        found = shutil.which(tool)
        assert found, f"{tool} is missing on this machine: root's set-up should have refused to run"
        (bin_dir / tool).symlink_to(found)


def wheelhouse(python: Path) -> Path:
    """The demo's wheels (.[flink,embedded] under constraints.txt) for ``python``, resolved by that interpreter (a
    dependency can hang on the patch release: redis needs async-timeout below 3.11.3), built once per interpreter,
    pyproject.toml and constraints.txt from root's pip cache or the index."""
    version = subprocess.run([python, "-c", "import sys; print(sys.version)"], capture_output=True, text=True,
                             check=True).stdout
    key = hashlib.sha256(version.encode() + (PROJECT_ROOT / "pyproject.toml").read_bytes()
                         + (PROJECT_ROOT / "constraints.txt").read_bytes()).hexdigest()[:16]
    wheels = SEED / f"wheels-{key}"
    if (wheels / ".complete").exists():
        wheels.chmod(0o755)
        return wheels
    SEED.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix="building-", dir=SEED))
    work = Path(tempfile.mkdtemp(prefix="build-", dir=SEED))
    try:
        source = work / "source"  # built from a copy, so that no build/ appears in the working tree
        for rel in repository_files():
            (source / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT_ROOT / rel, source / rel)
        subprocess.run([python, "-m", "venv", work / "venv"], check=True, capture_output=True)
        built = subprocess.run(
            [work / "venv" / "bin" / "pip", "wheel", "-q", "--disable-pip-version-check", "-w", building,
             "-c", PROJECT_ROOT / "constraints.txt", f"{source}[flink,embedded]", "pip", "setuptools"],
            capture_output=True, text=True, timeout=SETUP_TIMEOUT)
        assert built.returncode == 0, f"could not build the wheelhouse seed:\n{built.stderr[-3000:]}"
        for own in building.glob("user_actions_pipeline-*.whl"):
            own.unlink()
        (building / ".complete").touch()
        building.chmod(0o755)  # mkdtemp's 0700 would hide the wheels from the user
        try:
            building.rename(wheels)
        except OSError:  # a concurrent run got there first
            assert (wheels / ".complete").exists()
        for old in SEED.glob("wheels-*"):  # older pins' (a run still using one holds its own hard links)
            if old != wheels:
                shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(building, ignore_errors=True)
    return wheels


def go_env(name: str) -> Path:
    return Path(subprocess.run(["go", "env", name], capture_output=True, text=True, check=True).stdout.strip())


@pytest.fixture(scope="module")
def demo_setup():
    acct = account()
    started = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix="pipeline-setup-unprivileged-", dir="/tmp"))
    try:
        repo, home, bin_dir = base / "repo", base / "home", base / "bin"
        for rel in repository_files():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT_ROOT / rel, repo / rel)
        (home / ".m2").mkdir(parents=True)
        python = python311_for(acct)
        limited_path(bin_dir, python)

        # Seeds, from root's set-up (see the module docstring). The user owns everything it may write; the seeds it
        # only reads (wheels, module proxy, hard-linked build cache files) stay root's.
        link_tree(wheelhouse(python), base / "wheels")
        link_tree(go_env("GOMODCACHE") / "cache" / "download", base / "goproxy")
        m2 = Path.home() / ".m2" / "repository"
        assert m2.is_dir(), f"{m2} is missing: run scripts/setup.sh first (./test.sh does)"
        subprocess.run(["cp", "-a", str(m2), str(base / "m2")], check=True)
        (home / ".m2" / "settings.xml").write_text(
            f"<settings><localRepository>{base / 'm2'}</localRepository><offline>true</offline></settings>\n")
        (home / ".cache").mkdir()
        os.chown(base, acct.uid, acct.gid)
        for tree in (repo, home, base / "m2"):
            subprocess.run(["chown", "-R", f"{acct.uid}:{acct.gid}", str(tree)], check=True)
        link_tree(go_env("GOCACHE"), home / ".cache" / "go-build")
        subprocess.run(["find", str(home / ".cache" / "go-build"), "-type", "d", "-exec", "chown",
                        f"{acct.uid}:{acct.gid}", "{}", "+"], check=True)
        env = {
            "PATH": str(bin_dir), "HOME": str(home), "LANG": "C.UTF-8", "TMPDIR": "/tmp",
            "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(base / "wheels"),
            "GOPROXY": f"file://{base / 'goproxy'}", "GOSUMDB": "off", "GOCACHE": str(home / ".cache" / "go-build"),
            # Java takes user.home from the password database, where a system user's home does not exist.
            "MAVEN_OPTS": f"-Duser.home={home}",
        }
        netns = os.geteuid() == 0 and subprocess.run(["/usr/bin/unshare", "--net", "--", "/bin/sh", "-c",
                                                      LOOPBACK_UP, "sh", "true"],
                                                     capture_output=True).returncode == 0
        seeding = time.monotonic() - started

        t0 = time.monotonic()
        result = as_user(acct, ["bash", "scripts/setup.sh"], env, repo, netns=netns, timeout=SETUP_TIMEOUT)
        seconds = time.monotonic() - t0
        print(f"\nunprivileged set-up as {acct.name}: seeds {seeding:.1f} s, scripts/setup.sh {seconds:.1f} s"
              f" (network namespace: {netns})")
        yield Run(acct, base, repo, env, netns, result, seconds, seeding)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_path_holds_the_readme_tools_and_not_the_root_only_ones(demo_setup: Run) -> None:
    check = demo_setup.run(["bash", "-c", 'for t in "$@"; do command -v "$t" >/dev/null || echo "missing $t"; done',
                            "-", *README_TOOLS])
    assert check.returncode == 0 and check.stdout == "", check.stdout + check.stderr
    for tool in UNREACHABLE:
        found = demo_setup.run(["bash", "-c", f"command -v {tool}"])
        assert found.returncode != 0, f"{tool} is reachable in the limited PATH: {found.stdout.strip()}"
    who = demo_setup.run(["id", "-u"])
    assert who.stdout.strip() == str(demo_setup.account.uid) != "0"


def test_demo_setup_succeeds_as_an_unprivileged_user(demo_setup: Run) -> None:
    r = demo_setup.result
    logs = "".join(f"\n--- {log.name}\n{log.read_text(errors='replace')[-2000:]}"
                   for log in sorted((demo_setup.repo / ".cache").glob("*.log")))
    assert r.returncode == 0, f"scripts/setup.sh failed as {demo_setup.account.name}:\n{r.stdout}\n{r.stderr}{logs}"
    assert r.stdout.strip().splitlines()[-1].startswith("setup: ready ("), r.stdout
    assert "chromium" not in (r.stdout + r.stderr).lower() and "apt-get" not in r.stdout + r.stderr
    assert demo_setup.seconds < SETUP_TIMEOUT


def test_demo_runs_as_that_user(demo_setup: Run) -> None:
    assert demo_setup.result.returncode == 0
    repo = demo_setup.repo
    cli = demo_setup.run([str(repo / ".venv" / "bin" / "pipeline"), "--help"])
    assert cli.returncode == 0 and "usage" in cli.stdout.lower(), cli.stdout + cli.stderr
    demo_imports = demo_setup.run([str(repo / ".venv" / "bin" / "python"), "-c", "import pyflink, chdb, pypaimon"])
    assert demo_imports.returncode == 0, demo_imports.stderr
    for name in ("flink", "kafka", "format"):
        assert list((repo / ".cache" / "jars" / name).glob("*.jar")), f"no {name} jars"
    s3 = repo / ".cache" / "bin" / "versitygw"
    assert demo_setup.run([str(s3), "--version"]).returncode == 0


def test_demo_setup_installs_no_test_tooling(demo_setup: Run) -> None:
    assert demo_setup.result.returncode == 0
    venv = demo_setup.repo / ".venv"
    for tool in ("pytest", "ruff", "playwright", "lint-imports"):
        assert not (venv / "bin" / tool).exists(), f"the demo's set-up installed {tool}"
    dev = demo_setup.run([str(venv / "bin" / "python"), "-c",
                          "import importlib.util as u; print([m for m in ('pytest', 'pytest_timeout', 'ruff', "
                          "'playwright', 'importlinter', 'grimp') if u.find_spec(m)])"])
    assert dev.stdout.strip() == "[]", dev.stdout + dev.stderr
    stamps = {p.name for p in (demo_setup.repo / ".cache" / "stamps").iterdir()}
    assert "python-demo" in stamps and "python-test" not in stamps, stamps


def test_everything_set_up_belongs_to_that_user(demo_setup: Run) -> None:
    """No step ran as root: every file that set-up made in the copy is the user's."""
    assert demo_setup.result.returncode == 0
    foreign = [str(p) for top in (".venv", ".cache") for p in (demo_setup.repo / top).rglob("*")
               if p.lstat().st_uid != demo_setup.account.uid]
    assert not foreign, f"{len(foreign)} files not owned by {demo_setup.account.name}: {foreign[:5]}"


def test_second_run_is_fast_and_changes_nothing(demo_setup: Run) -> None:
    assert demo_setup.result.returncode == 0
    t0 = time.monotonic()
    again = demo_setup.run(["bash", "scripts/setup.sh"], timeout=60)
    took = time.monotonic() - t0
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines() == [demo_setup.result.stdout.strip().splitlines()[-1]], again.stdout
    assert took < 5, f"an idempotent set-up took {took:.1f} s"


@pytest.mark.parametrize(("hidden", "message"), [
    ("python3.11", "setup: Python 3.11 is missing"),
    ("java", "setup: Java is missing"),
    ("mvn", "setup: Maven is missing"),
    ("go", "setup: Go is missing"),
])
def test_each_prerequisite_is_needed_and_named(demo_setup: Run, hidden: str, message: str) -> None:
    """Taking one README tool out of PATH stops set-up at once with one line naming it (before anything is
    installed); with all four (the runs above) nothing else is needed."""
    bin_dir = demo_setup.base / f"bin-without-{hidden}"
    shutil.copytree(demo_setup.base / "bin", bin_dir, symlinks=True)
    (bin_dir / hidden).unlink()
    if hidden == "python3.11":
        (bin_dir / "python3").unlink(missing_ok=True)
    r = as_user(demo_setup.account, ["bash", "scripts/setup.sh"], {**demo_setup.env, "PATH": str(bin_dir)},
                demo_setup.repo)
    assert r.returncode == 1 and r.stderr.startswith(message) and r.stderr.count("\n") == 1, r.stderr


def test_java_other_than_17_is_refused(demo_setup: Run) -> None:
    bin_dir = demo_setup.base / "bin-java-21"
    shutil.copytree(demo_setup.base / "bin", bin_dir, symlinks=True)
    (bin_dir / "java").unlink()
    (bin_dir / "java").write_text('#!/bin/sh\necho \'openjdk version "21.0.4" 2024-07-16\' >&2\n')
    (bin_dir / "java").chmod(0o755)
    r = as_user(demo_setup.account, ["bash", "scripts/setup.sh"], {**demo_setup.env, "PATH": str(bin_dir)},
                demo_setup.repo)
    assert r.returncode == 1 and r.stderr.startswith("setup: Java 17 is needed") and r.stderr.count("\n") == 1, r.stderr

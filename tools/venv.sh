#!/bin/sh
# Make sure $VENV was made by a supported Python and has `pip install -e "$EXTRAS"`.
# Usage (from the Makefile): PY=<python or empty> SUPPORTED="3.11 3.12 3.13" tools/venv.sh VENV EXTRAS STAMP...
#
# - PY empty: the first of python3, python3.13, python3.12, python3.11 whose version is supported
#   and that can make a venv. None found: as root on Debian, apt-get installs python3 and
#   python3-venv; elsewhere it says what to install.
# - An existing venv is kept while its python runs and is supported (and, with PY given, is PY's
#   version); otherwise it is made anew: re-running with another Python never reuses a broken one.
# - EXTRAS is installed when a STAMP is missing or older than pyproject.toml; every STAMP is touched.
set -eu

VENV=$1
EXTRAS=$2
shift 2
SUPPORTED=${SUPPORTED:-"3.11 3.12 3.13"}
PY=${PY:-}

say() { echo "venv: $*" >&2; }

# "3.12" for a python that runs, nothing otherwise.
version_of() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true; }

supported() {
    for _s in $SUPPORTED; do [ "$_s" = "$1" ] && return 0; done
    return 1
}

can_make_venv() { "$1" -c 'import ensurepip, venv' 2>/dev/null; }

need_python() {
    say "roomserver needs Python $(echo "$SUPPORTED" | sed 's/ /, /g') with its venv module."
    say "  Debian/Ubuntu: apt-get install python3 python3-venv (or python3.12 python3.12-venv …)"
    say "  or name one: make PY=/path/to/python3.12 serve"
    exit 1
}

pick_python() {
    if [ -n "$PY" ]; then
        v=$(version_of "$PY")
        [ -n "$v" ] || { say "PY=$PY does not run"; need_python; }
        supported "$v" || { say "PY=$PY is Python $v"; need_python; }
        can_make_venv "$PY" || { debian_venv "$PY" "$v" || { say "PY=$PY has no venv module"; need_python; }; }
        echo "$PY"
        return
    fi
    for c in python3 python3.13 python3.12 python3.11; do
        p=$(command -v "$c" 2>/dev/null) || continue
        v=$(version_of "$p")
        [ -n "$v" ] && supported "$v" || continue
        if can_make_venv "$p" || debian_venv "$p" "$v"; then
            "$p" -c 'import sys; print(sys.executable)'  # the interpreter behind a shim
            return
        fi
    done
    if debian_python; then
        PY=python3 pick_python
        return
    fi
    need_python
}

is_debian_root() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }

# Debian splits venv (ensurepip) out of the interpreter package.
debian_venv() {
    is_debian_root || return 1
    case "$1" in /usr/bin/*) ;; *) return 1 ;; esac
    say "installing python$2-venv (Debian keeps venv apart from Python)"
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "python$2-venv"; } >&2 || return 1
    can_make_venv "$1"
}

debian_python() {
    is_debian_root || return 1
    say "no supported Python found: installing Debian's python3 and python3-venv"
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3 python3-venv; } >&2 || return 1
    v=$(version_of python3)
    [ -n "$v" ] && supported "$v"
}

# -- a PY that cannot be used is refused before anything is touched ---------------------
[ -z "$PY" ] || PY=$(pick_python)

# -- an existing venv: keep it only if it is sound -------------------------------------
if [ -d "$VENV" ]; then
    have=$(version_of "$VENV/bin/python")
    reason=""
    if [ -z "$have" ]; then
        reason="its python does not run (made by an interpreter that is gone?)"
    elif ! supported "$have"; then
        reason="it was made by Python $have, which roomserver does not support"
    elif [ -n "$PY" ] && [ "$(version_of "$PY")" != "$have" ]; then
        reason="it was made by Python $have and PY=$PY is Python $(version_of "$PY")"
    elif [ ! -f "$VENV/.python-version" ] && ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
        reason="it has no working pip (an interrupted creation?)"
    fi
    if [ -n "$reason" ]; then
        say "making $VENV anew: $reason"
        rm -rf "$VENV"
    fi
fi

if [ ! -d "$VENV" ]; then
    py=$(pick_python)
    say "creating $VENV with $py (Python $(version_of "$py"))"
    "$py" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -c 'import platform; print(platform.python_version())' >"$VENV/.python-version"
fi

stale=""
for stamp in "$@"; do
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then stale=1; fi
done
if [ -n "$stale" ]; then
    say "installing roomserver$(echo "$EXTRAS" | sed 's/^\.//') into $VENV"
    "$VENV/bin/python" -m pip install -q -e "$EXTRAS"
    touch "$@"
fi

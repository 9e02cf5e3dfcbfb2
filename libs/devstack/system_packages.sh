#!/usr/bin/env bash
# The Debian packages `make test` and `make run` need beyond Python, make and git, found or installed:
#   system_packages.sh PACKAGE...   (chromium, prometheus, nodejs, npm, python3-venv)
# Each package is looked for by what the build uses of it. As root, whatever is missing is installed
# (one `apt-get update`, then one `apt-get install -y`); otherwise it stops at once, printing the exact
# command to run, so a newcomer never waits for a test run to fail on a missing tool.
set -euo pipefail

present() {
  case "$1" in
    chromium) [ -x /usr/bin/chromium ] ;;  # the browser tests launch Debian's build at this path
    prometheus) command -v promtool >/dev/null ;;  # promtool checks the alert rules (tests/deploy)
    nodejs) command -v node >/dev/null ;;  # the web app's build (vite)
    npm) command -v npm >/dev/null ;;
    # Debian splits ensurepip out of python3: without it `python3 -m venv` cannot make .venv.
    python3-venv) "${PYTHON:-python3}" -c 'import ensurepip' >/dev/null 2>&1 ;;
    *) echo "system_packages.sh: no check for package \"$1\"" >&2; exit 2 ;;
  esac
}

missing=()
for package in "$@"; do
  present "$package" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$EUID" -ne 0 ]; then
  echo "Missing Debian packages: ${missing[*]}. Install them, then run make again:" >&2
  echo "" >&2
  echo "    sudo apt-get install -y ${missing[*]}" >&2
  echo "" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null; then
  echo "Missing packages: ${missing[*]}, and there is no apt-get to install them with." >&2
  exit 1
fi
echo "Installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
for package in "${missing[@]}"; do
  present "$package" || { echo "apt-get installed $package, but it is still not found" >&2; exit 1; }
done

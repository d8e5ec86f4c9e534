#!/usr/bin/env bash
# Installs what the tests need: the package with its test extras and, where this runs as root
# on Debian, Chromium and ChromeDriver for the reader-study page's browser test.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
    && ! { command -v chromium && command -v chromedriver; } >/dev/null; then
  apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null
fi
pip install -q -e ".[test]"

#!/bin/sh
# Debian's Chromium for the console's browser tests (tests/console/test_console_browser.py).
# Installs the packages chromium and chromium-driver when they are missing and we may (root,
# apt-get); otherwise says why, and the browser tests skip with that reason. Never fails.
CHROMIUM="${SBH_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "browser: no Chromium at $CHROMIUM and cannot install it here (needs root and apt-get);" \
         "the browser tests will skip" >&2
    exit 0
fi
echo "browser: installing Debian's chromium and chromium-driver for the browser tests"
start=$(date +%s)
if DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/tmp/sbh-chromium-install.log 2>&1 \
   || { apt-get update -q >>/tmp/sbh-chromium-install.log 2>&1 \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >>/tmp/sbh-chromium-install.log 2>&1; }; then
    echo "browser: installed in $(( $(date +%s) - start )) s"
else
    echo "browser: apt-get could not install chromium (see /tmp/sbh-chromium-install.log);" \
         "the browser tests will skip" >&2
fi
exit 0

#!/usr/bin/env bash
# Install the Debian CJK and Latin fonts and Tesseract the shipped configs use, when missing
# (the last line of fonts: the second unseen set of configs/unseen_fonts.yaml).
# Quick when already done; prints what to install when it cannot install (not root, no apt).
#   install_system.sh          fonts + Tesseract (what the workflow uses)
#   install_system.sh --test   also headless Chromium (the HTML report test renders the report in it)
set -euo pipefail
PKGS=(fonts-noto-cjk fonts-noto-cjk-extra fonts-wqy-microhei fonts-wqy-zenhei fonts-arphic-uming fonts-arphic-ukai
      fonts-lxgw-wenkai fonts-droid-fallback fonts-dejavu-core fonts-dejavu-extra fonts-urw-base35
      fonts-liberation2 fonts-freefont-ttf fonts-cns11643-kai fonts-cns11643-sung fonts-cwtex-ming
      fonts-cwtex-kai fonts-cwtex-fs fonts-cwtex-heib fonts-smiley-sans fonts-jetbrains-mono
      fonts-firacode fonts-inconsolata fonts-hack fonts-noto-mono fonts-go fonts-oxygen fonts-lato
      fonts-quicksand fonts-comic-neue fonts-open-sans fonts-cantarell fonts-roboto-unhinted
      fonts-crosextra-carlito fonts-linuxlibertine fonts-cmu fonts-sil-gentium fonts-stix fonts-sil-charis
      fonts-hanazono fonts-inter fonts-ebgaramond fonts-crosextra-caladea fonts-sil-andika fonts-courier-prime
      tesseract-ocr tesseract-ocr-chi-sim tesseract-ocr-eng)
if [ "${1:-}" = "--test" ]; then
    PKGS+=(chromium)
fi
missing=()
if command -v dpkg-query >/dev/null 2>&1; then
    for p in "${PKGS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
else
    missing=("${PKGS[@]}")
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    as_root=()
elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo)
else
    echo "synthocr: please install these Debian packages (or the same fonts by hand): ${missing[*]}" >&2
    echo "  sudo apt-get install ${missing[*]}" >&2
    echo "  Without them the default fonts are missing; you can list your own fonts in the config instead." >&2
    exit 0
fi
"${as_root[@]}" apt-get update -qq
# Only what this distribution has: one name it lacks (Ubuntu has no chromium deb, only a snap)
# would fail the whole install, fonts and Tesseract with it.
available=()
unknown=()
for p in "${missing[@]}"; do
    if apt-cache show "$p" >/dev/null 2>&1; then available+=("$p"); else unknown+=("$p"); fi
done
if [ ${#unknown[@]} -gt 0 ]; then
    echo "synthocr: this system's apt has no package ${unknown[*]}: skipped (install it by hand;" \
         "a config's glob that then matches nothing leaves its faces out, a font it names by path" \
         "stops the workflow at its start, naming the file and key; a missing chromium skips the" \
         "HTML report's rendering test)" >&2
fi
[ ${#available[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${available[*]}"
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${available[@]}" >/dev/null

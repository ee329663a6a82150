#!/bin/sh
# Regenerates the knowledge-base PDFs in examples/knowledge/ from the HTML sources in src/.
#
# Needs these Debian 12 packages (apt-get install --no-install-recommends ...):
#   libreoffice-writer-nogui   LibreOffice 7.4 Writer, headless (HTML import + PDF export)
#   fonts-liberation2          Liberation Sans / Serif, the fonts the HTML asks for
#   fonts-dejavu-core          fallback glyphs (▲ ▼)
#   poppler-utils              pdfinfo / pdftotext, only for the check at the end
#
# Usage: sh examples/knowledge/src/build.sh      (from anywhere)
set -eu

SRC_DIR=$(cd "$(dirname "$0")" && pwd)
OUT_DIR=$(dirname "$SRC_DIR")

# A throw-away LibreOffice profile, so the build neither needs nor touches ~/.config/libreoffice
# and does not collide with a running LibreOffice instance.
PROFILE_DIR=$(mktemp -d /tmp/mailroom-lo-profile.XXXXXX)
WORK_DIR=$(mktemp -d /tmp/mailroom-lo-out.XXXXXX)
trap 'rm -rf "$PROFILE_DIR" "$WORK_DIR"' EXIT

for doc in lift-pro-user-manual warranty-and-returns; do
    # "HTML (StarWriter)" imports the page as a Writer text document (not Writer/Web), so the
    # CSS page-break-before rules start new pages; writer_pdf_Export is the stock PDF filter.
    soffice -env:UserInstallation="file://$PROFILE_DIR" --headless --norestore \
        --infilter="HTML (StarWriter)" \
        --convert-to pdf:writer_pdf_Export \
        --outdir "$WORK_DIR" "$SRC_DIR/$doc.html"
    mv "$WORK_DIR/$doc.pdf" "$OUT_DIR/$doc.pdf"
done

if command -v pdfinfo >/dev/null 2>&1; then
    for doc in lift-pro-user-manual warranty-and-returns; do
        printf '%s: ' "$doc.pdf"
        pdfinfo "$OUT_DIR/$doc.pdf" | awk '/^(Pages|Producer):/ {printf "%s ", $0} END {print ""}'
    done
fi

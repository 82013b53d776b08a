#!/bin/sh
# Installs nitro and nitroctl, their man pages and shell completions, the
# way distribution packages expect:
#
#   cargo build --release && ./install.sh [--init-links] [PREFIX=/usr/local] [DESTDIR=]
#
# Variables may also come from the environment. Nothing outside
# $DESTDIR$PREFIX is touched. Only with --init-links are the names halt,
# poweroff, reboot and init linked to nitroctl in $PREFIX/sbin (with their
# man pages): on a system that boots with nitro, not beside another init,
# whose halt and reboot they would shadow.
set -eu
init_links=no
for arg in "$@"; do
	case $arg in
	--init-links) init_links=yes ;;
	PREFIX=* | DESTDIR=* | BINDIR=* | SBINDIR=* | MANDIR=*) eval "${arg%%=*}=\${arg#*=}" ;;
	*) echo "usage: $0 [--init-links] [PREFIX=dir] [DESTDIR=dir]" >&2; exit 2 ;;
	esac
done
PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
BINDIR=${BINDIR:-$PREFIX/bin}
SBINDIR=${SBINDIR:-$PREFIX/sbin}
MANDIR=${MANDIR:-$PREFIX/share/man}
release=${RELEASE_DIR:-target/x86_64-unknown-linux-musl/release}
here=$(dirname "$0")

for bin in nitro nitroctl; do
	[ -x "$release/$bin" ] || { echo "$release/$bin is missing: run cargo build --release first" >&2; exit 1; }
done
install -d "$DESTDIR$BINDIR" "$DESTDIR$SBINDIR" "$DESTDIR$MANDIR/man1" "$DESTDIR$MANDIR/man8"
install -m 755 "$release/nitro" "$DESTDIR$SBINDIR/nitro"
install -m 755 "$release/nitroctl" "$DESTDIR$BINDIR/nitroctl"
install -m 644 "$here/man/nitroctl.1" "$DESTDIR$MANDIR/man1/nitroctl.1"
install -m 644 "$here/man/nitro.8" "$DESTDIR$MANDIR/man8/"
if [ "$init_links" = yes ]; then
	for name in halt poweroff reboot init; do
		ln -sf "$BINDIR/nitroctl" "$DESTDIR$SBINDIR/$name"
	done
	install -m 644 "$here/man/halt.8" "$DESTDIR$MANDIR/man8/"
	for name in poweroff reboot init; do
		ln -sf halt.8 "$DESTDIR$MANDIR/man8/$name.8"
	done
fi
install -d "$DESTDIR$PREFIX/share/bash-completion/completions" \
	"$DESTDIR$PREFIX/share/zsh/site-functions" \
	"$DESTDIR$PREFIX/share/fish/vendor_completions.d"
install -m 644 "$here/completions/nitroctl.bash" "$DESTDIR$PREFIX/share/bash-completion/completions/nitroctl"
install -m 644 "$here/completions/_nitroctl" "$DESTDIR$PREFIX/share/zsh/site-functions/_nitroctl"
install -m 644 "$here/completions/nitroctl.fish" "$DESTDIR$PREFIX/share/fish/vendor_completions.d/nitroctl.fish"
echo "installed under $DESTDIR$PREFIX"

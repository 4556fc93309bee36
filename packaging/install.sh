#!/bin/sh
# Installs, upgrades or removes leafgate from this release directory.
#
#   sudo ./install.sh                 install or upgrade, then (re)start the service
#   sudo ./install.sh --uninstall     remove the program and the service; keep config and data
#   sudo ./install.sh --uninstall --purge   also remove config, data and the user
#
# Layout: releases under PREFIX/releases/<version>, PREFIX/current pointing at the running
# one, BIN_DIR/leafgate, CONFIG_DIR/leafgate.yaml (kept across upgrades), DATA_DIR (the
# buffer, kept across upgrades; the new version migrates it at start).
set -eu

PREFIX=/opt/leafgate
BIN_DIR=/usr/local/bin
CONFIG_DIR=/etc/leafgate
DATA_DIR=/var/lib/leafgate
SERVICE_USER=leafgate
UNIT_DIR=/etc/systemd/system
SYSTEMD=yes
START=yes
ACTION=install
PURGE=no
USER_COMMENT="leafgate edge gateway"
WRAPPER_MARK="# leafgate command, written by install.sh"
# Releases kept under PREFIX/releases, the running one included, for a manual rollback.
KEEP_RELEASES=2

usage() {
  cat <<EOF
Usage: $0 [options]            install or upgrade leafgate, then (re)start it
       $0 --uninstall [--purge]

Options:
  --prefix DIR       program files (default $PREFIX)
  --bin-dir DIR      where the 'leafgate' command goes (default $BIN_DIR); it reads
                     CONFIG_DIR/leafgate.yaml unless given -c
  --config-dir DIR   configuration, kept across upgrades (default $CONFIG_DIR)
  --data-dir DIR     the buffer's database, kept across upgrades (default $DATA_DIR)
  --user NAME        the service's own user, created when missing (default $SERVICE_USER)
  --unit-dir DIR     where the systemd unit goes (default $UNIT_DIR)
  --no-systemd       do not run systemctl (containers, tests); the unit is still written
  --no-start         install and enable the service but do not (re)start it
  --uninstall        stop and remove the service and the program files
  --purge            with --uninstall: also remove config, data and the user
  -h, --help         show this help
EOF
}

die() {
  echo "install.sh: $*" >&2
  exit 1
}

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX=${2:?--prefix needs a directory}; shift ;;
    --bin-dir) BIN_DIR=${2:?--bin-dir needs a directory}; shift ;;
    --config-dir) CONFIG_DIR=${2:?--config-dir needs a directory}; shift ;;
    --data-dir) DATA_DIR=${2:?--data-dir needs a directory}; shift ;;
    --user) SERVICE_USER=${2:?--user needs a name}; shift ;;
    --unit-dir) UNIT_DIR=${2:?--unit-dir needs a directory}; shift ;;
    --no-systemd) SYSTEMD=no ;;
    --no-start) START=no ;;
    --uninstall) ACTION=uninstall ;;
    --purge) PURGE=yes ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
  shift
done

for dir in "$PREFIX" "$BIN_DIR" "$CONFIG_DIR" "$DATA_DIR" "$UNIT_DIR"; do
  case "$dir" in
    /*) ;;
    *) die "directories must be absolute: $dir" ;;
  esac
done

HERE=$(cd "$(dirname "$0")" && pwd)
if [ "$(id -u)" -ne 0 ]; then
  die "run it as root (sudo $0): it creates a user and writes under $PREFIX and $CONFIG_DIR"
fi
if [ "$SYSTEMD" = yes ] && ! command -v systemctl >/dev/null 2>&1; then
  die "systemctl not found: this system does not run systemd; use --no-systemd and start 'leafgate run -c $CONFIG_DIR/leafgate.yaml' yourself"
fi

uninstall() {
  if [ "$SYSTEMD" = yes ]; then
    systemctl disable --now leafgate.service 2>/dev/null || true
  fi
  rm -f "$UNIT_DIR/leafgate.service"
  if [ "$SYSTEMD" = yes ]; then
    systemctl daemon-reload
  fi
  if [ -f "$BIN_DIR/leafgate" ] && [ "$(sed -n 2p "$BIN_DIR/leafgate")" = "$WRAPPER_MARK" ]; then
    rm -f "$BIN_DIR/leafgate"
  fi
  rm -rf "$PREFIX"
  if [ "$PURGE" = yes ]; then
    rm -rf "$CONFIG_DIR" "$DATA_DIR"
    # Only a user this script created (by its comment) is removed.
    case "$(getent passwd "$SERVICE_USER" || true)" in
      *":$USER_COMMENT:"*) userdel "$SERVICE_USER" ;;
    esac
    echo "leafgate removed, with its configuration, data and user"
  else
    echo "leafgate removed; kept $CONFIG_DIR and $DATA_DIR (--purge removes them)"
  fi
}

if [ "$ACTION" = uninstall ]; then
  uninstall
  exit 0
fi

read -r VERSION TARGET RUNTIME <"$HERE/VERSION" || die "$HERE/VERSION missing: run install.sh from an unpacked release"
case "$TARGET:$(uname -m)" in
  linux-x64:x86_64 | linux-arm64:aarch64) ;;
  linux-arm64:armv7l | linux-arm64:armv6l)
    die "this is the 64-bit ARM build and this system is 32-bit ($(uname -m)): install Raspberry Pi OS 64-bit" ;;
  *) die "this release is for $TARGET and this machine is $(uname -m): use the matching tarball" ;;
esac

# The release must run here before anything is switched over to it.
if ! "$HERE/bin/leafgate" version >/dev/null 2>&1; then
  "$HERE/bin/leafgate" version || true
  die "the release does not run on this system (above); nothing was changed"
fi

# The service's own user, in dialout to reach serial ports.
if ! id "$SERVICE_USER" >/dev/null 2>&1; then
  useradd --system --user-group --home-dir "$DATA_DIR" --no-create-home \
    --shell /usr/sbin/nologin --comment "$USER_COMMENT" "$SERVICE_USER"
  echo "created user $SERVICE_USER"
fi
if getent group dialout >/dev/null 2>&1 && [ "$SERVICE_USER" != root ]; then
  usermod -a -G dialout "$SERVICE_USER"
fi
GROUP=$(id -gn "$SERVICE_USER")

# Program files: copied beside the running release, checked, then switched over at once.
release="$PREFIX/releases/$VERSION"
mkdir -p "$PREFIX/releases"
rm -rf "$release.new"
mkdir "$release.new"
for part in bin lib node install.sh leafgate.service leafgate.yaml README.md VERSION; do
  cp -R "$HERE/$part" "$release.new/"
done
chown -R root:root "$release.new"
chmod -R go-w "$release.new"

# Configuration: a first install gets the example; an upgrade keeps the file and checks it
# with the new version before switching.
mkdir -p "$CONFIG_DIR"
config="$CONFIG_DIR/leafgate.yaml"
if [ ! -e "$config" ]; then
  sed "s|/var/lib/leafgate|$DATA_DIR|g" "$HERE/leafgate.yaml" >"$config"
  chown "root:$GROUP" "$config"
  chmod 0640 "$config"
  echo "wrote $config: set upstream.servers to your hub"
fi
if ! effective=$("$release.new/bin/leafgate" check -c "$config"); then
  rm -rf "$release.new"
  die "$config is not valid for leafgate $VERSION (above); fix it and run install.sh again; nothing was changed"
fi
# The unit lets the service write only DATA_DIR.
configured=$(printf '%s\n' "$effective" | sed -n 's/^  data_dir: //p' | sed -n 1p)
if [ "$configured" != "$DATA_DIR" ]; then
  echo "install.sh: warning: $config keeps its data in $configured, but the service may write only to $DATA_DIR: run install.sh with --data-dir $configured, or set gateway.data_dir to $DATA_DIR" >&2
fi

mkdir -p "$DATA_DIR"
chown "$SERVICE_USER:$GROUP" "$DATA_DIR"
chmod 0700 "$DATA_DIR"

rm -rf "$release"
mv "$release.new" "$release"
ln -sfn "releases/$VERSION" "$PREFIX/current.new"
mv -T "$PREFIX/current.new" "$PREFIX/current"
# The command reads this box's config unless given -c or LEAFGATE_CONFIG.
mkdir -p "$BIN_DIR"
cat >"$BIN_DIR/leafgate.new" <<WRAPPER
#!/bin/sh
$WRAPPER_MARK
: "\${LEAFGATE_CONFIG:=$config}"
export LEAFGATE_CONFIG
exec "$PREFIX/current/bin/leafgate" "\$@"
WRAPPER
chmod 0755 "$BIN_DIR/leafgate.new"
mv "$BIN_DIR/leafgate.new" "$BIN_DIR/leafgate"

# Older releases beyond the newest KEEP_RELEASES go (the running one always stays).
# Leftovers of an interrupted install (*.new) go first.
rm -rf "$PREFIX"/releases/*.new
ls -1t "$PREFIX/releases" | tail -n +$((KEEP_RELEASES + 1)) | while read -r old; do
  [ "$old" = "$VERSION" ] || rm -rf "${PREFIX:?}/releases/$old"
done

# The unit is written either way, so --no-systemd leaves it ready for a system that has one.
mkdir -p "$UNIT_DIR"
sed -e "s|/opt/leafgate|$PREFIX|g" -e "s|/etc/leafgate|$CONFIG_DIR|g" \
  -e "s|/var/lib/leafgate|$DATA_DIR|g" -e "s|^User=leafgate|User=$SERVICE_USER|" \
  -e "s|^Group=leafgate|Group=$GROUP|" "$HERE/leafgate.service" >"$UNIT_DIR/leafgate.service.new"
mv "$UNIT_DIR/leafgate.service.new" "$UNIT_DIR/leafgate.service"

echo "installed leafgate $VERSION ($TARGET, $RUNTIME) in $release"

if [ "$SYSTEMD" = no ]; then
  echo "start it with: $BIN_DIR/leafgate run -c $config (as $SERVICE_USER)"
  exit 0
fi
systemctl daemon-reload
systemctl enable leafgate.service >/dev/null
if [ "$START" = yes ]; then
  systemctl restart leafgate.service
  echo "leafgate is running: 'leafgate status', 'journalctl -u leafgate -f'"
else
  echo "enabled; start it with: systemctl start leafgate"
fi

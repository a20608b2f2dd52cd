# Shared by the agent's and the collector's maintainer scripts (.deb and .rpm): build.sh puts
# this file, the package's own functions and a small dispatch into each script.

# The service is enabled on every install; it is started or restarted only where systemd runs
# (not in a container or chroot build, where the enable symlink is all that can be done).
hygiene_enable() {
  command -v systemctl >/dev/null 2>&1 || return 0
  systemctl enable "$1" >/dev/null 2>&1 || echo "$1: could not enable the service" >&2
  if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
}

hygiene_start() {
  if [ -d /run/systemd/system ]; then
    systemctl restart "$1" || echo "$1: did not start; see journalctl -u $1" >&2
  fi
}

hygiene_stop_disable() {
  command -v systemctl >/dev/null 2>&1 || return 0
  if [ -d /run/systemd/system ]; then systemctl stop "$1" || true; fi
  systemctl disable "$1" >/dev/null 2>&1 || true
}

hygiene_reload() {
  if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
}

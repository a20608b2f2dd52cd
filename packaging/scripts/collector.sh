# The collector's install, upgrade, removal and purge.
COLLECTOR_UNIT=hygiene-collector.service
COLLECTOR_STATE=/var/lib/hygiene

# $1: install | upgrade
collector_configure() {
  if ! getent passwd hygiene >/dev/null; then
    useradd --system --user-group --home-dir "$COLLECTOR_STATE" --no-create-home \
      --shell /usr/sbin/nologin --comment "Hygiene collector" hygiene
  fi
  install -d -m 0750 -o hygiene -g hygiene "$COLLECTOR_STATE"
  if [ ! -e "$COLLECTOR_STATE/pki/ca.pem" ]; then
    collector_pki_init
  fi
  hygiene_enable "$COLLECTOR_UNIT"
  hygiene_start "$COLLECTOR_UNIT"
}

# The collector's CA, server and admin certificates. The server certificate names this
# machine as agents will reach it: HYGIENE_SERVER_NAMES (space or comma separated) if given,
# else its host names and addresses, and localhost for hygienectl here.
collector_pki_init() {
  names=$(echo "${HYGIENE_SERVER_NAMES:-}" | tr ',' ' ')
  if [ -z "$names" ]; then
    names="$(hostname 2>/dev/null || true) $(hostname -f 2>/dev/null || true) $(hostname -I 2>/dev/null || true)"
  fi
  set -- --server-name localhost --server-name 127.0.0.1
  for name in $names; do
    case " $* " in *" $name "*) ;; *) set -- "$@" --server-name "$name" ;; esac
  done
  /usr/bin/hygiene-collector pki init --dir "$COLLECTOR_STATE/pki" "$@"
  chown -R hygiene:hygiene "$COLLECTOR_STATE/pki"
  chmod 0700 "$COLLECTOR_STATE/pki"
  echo "hygiene-collector: CA and certificates in $COLLECTOR_STATE/pki for: $*" >&2
}

collector_remove() {
  hygiene_stop_disable "$COLLECTOR_UNIT"
}

# The store, the PKI and the configuration go; the system user stays (files elsewhere may
# still be owned by it), as Debian's packages leave theirs.
collector_purge() {
  rm -rf "$COLLECTOR_STATE"
  rmdir /etc/hygiene 2>/dev/null || true
  hygiene_reload
}

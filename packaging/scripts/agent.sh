# The agent's install, upgrade, removal and purge.
AGENT_UNIT=hygiene-agent.service
AGENT_STATE=/var/lib/hygiene-agent
AGENT_ENV=/etc/hygiene-agent/enroll.env

# $1: install | upgrade
agent_configure() {
  install -d -m 0700 "$AGENT_STATE" "$AGENT_STATE/certs" "$AGENT_STATE/state"
  # A token given to the install (HYGIENE_ENROLL_TOKEN=... apt install ./hygiene-agent.deb)
  # is kept for the service, which enrolls with it on its first start. An upgrade without
  # one keeps the file as it is.
  if [ -n "${HYGIENE_ENROLL_TOKEN:-}${HYGIENE_COLLECTOR:-}${HYGIENE_CA_FINGERPRINT:-}" ]; then
    agent_write_env
  fi
  hygiene_enable "$AGENT_UNIT"
  if [ "$1" = upgrade ] || agent_configured; then
    hygiene_start "$AGENT_UNIT"
  else
    echo "hygiene-agent: no collector set: give HYGIENE_COLLECTOR, HYGIENE_ENROLL_TOKEN and" >&2
    echo "  HYGIENE_CA_FINGERPRINT to the install, or edit /etc/hygiene-agent/agent.toml," >&2
    echo "  then: systemctl start hygiene-agent" >&2
  fi
}

agent_write_env() {
  for value in "${HYGIENE_COLLECTOR:-}" "${HYGIENE_ENROLL_TOKEN:-}" "${HYGIENE_CA_FINGERPRINT:-}"; do
    case "$value" in
      *[!A-Za-z0-9:/._\[\]-]*)
        echo "hygiene-agent: refusing an enrollment setting with characters no address, token or fingerprint has: $value" >&2
        exit 1 ;;
    esac
  done
  (
    umask 077
    {
      echo "# Written at install from the installer's environment; read by hygiene-agent.service."
      [ -z "${HYGIENE_COLLECTOR:-}" ] || echo "HYGIENE_COLLECTOR=$HYGIENE_COLLECTOR"
      [ -z "${HYGIENE_ENROLL_TOKEN:-}" ] || echo "HYGIENE_ENROLL_TOKEN=$HYGIENE_ENROLL_TOKEN"
      [ -z "${HYGIENE_CA_FINGERPRINT:-}" ] || echo "HYGIENE_CA_FINGERPRINT=$HYGIENE_CA_FINGERPRINT"
    } > "$AGENT_ENV.new"
    mv "$AGENT_ENV.new" "$AGENT_ENV"
  )
}

# A collector is named somewhere the service reads, or a certificate is in place.
agent_configured() {
  grep -qs '^HYGIENE_COLLECTOR=' "$AGENT_ENV" \
    || grep -qs '^[[:space:]]*collector[[:space:]]*=' /etc/hygiene-agent/agent.toml
}

agent_remove() {
  hygiene_stop_disable "$AGENT_UNIT"
}

agent_purge() {
  rm -rf "$AGENT_STATE" "$AGENT_ENV"
  rmdir /etc/hygiene-agent 2>/dev/null || true
  hygiene_reload
}

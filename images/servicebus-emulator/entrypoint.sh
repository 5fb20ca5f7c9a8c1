#!/bin/sh
# Run this project's emulator the way the official image runs its own: the topology from
# /ServiceBus_Emulator/ConfigFiles/Config.json, AMQP on 5672 and health/admin on 5300, all
# interfaces. The official image's SQL Server settings mean nothing here and are only noted.
set -eu
for name in SQL_SERVER MSSQL_SA_PASSWORD SQL_WAIT_INTERVAL; do
    eval "value=\${$name:-}"
    [ -z "$value" ] || echo "sbemu: $name is set but not used (this emulator needs no SQL Server)"
done
if [ -n "${ACCEPT_EULA:-}" ]; then
    echo "sbemu: ACCEPT_EULA=$ACCEPT_EULA noted; this emulator has no EULA (MIT licence)"
fi
set -- --config "${SBEMU_CONFIG:-/ServiceBus_Emulator/ConfigFiles/Config.json}" \
    --host 0.0.0.0 --port 5672 --admin-port 5300 \
    --tls-dir /ServiceBus_Emulator/tls --log-level "${SBEMU_LOG_LEVEL:-INFO}" \
    ${SBEMU_DATA_DIR:+--data-dir "$SBEMU_DATA_DIR"} "$@"
exec python -m emulator.servicebus "$@"

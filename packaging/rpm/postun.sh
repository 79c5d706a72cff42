# %postun of pam-toopher (RPM). $1: 0 on erase, 1 on upgrade.
# %systemd_postun_with_restart: a running toopherd is restarted on upgrade (it finishes
# the requests in flight on SIGTERM).
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart toopherd.service >/dev/null 2>&1 || :
    fi
fi
if [ "$1" -eq 0 ]; then
    rmdir /etc/toopher 2>/dev/null || :
    # The database (TOTP secrets) is kept, as RPM keeps data on erase; say where.
    if [ -d /var/lib/toopherd ]; then
        echo "pam-toopher: kept /var/lib/toopherd (enrolments); remove it to forget them" >&2
    fi
fi
exit 0

# %post of pam-toopher (RPM). $1: 1 on install, 2 on upgrade.
# The state directory holds the TOTP secrets: toopherd's own, 0700 (systemd's
# StateDirectory= keeps it so at every start; this makes toopherd runnable without it).
if [ ! -L /var/lib/toopherd ]; then
    mkdir -p /var/lib/toopherd
    chown toopherd:toopherd /var/lib/toopherd
    chmod 0700 /var/lib/toopherd
fi
if ! /usr/sbin/toopherd --config /etc/toopher/toopherd.toml --check-config >/dev/null 2>&1; then
    echo "pam-toopher: WARNING: toopherd --check-config found problems with /etc/toopher/toopherd.toml:" >&2
    /usr/sbin/toopherd --config /etc/toopher/toopherd.toml --check-config >&2 || :
fi
# %systemd_post: enable according to the system's preset policy; nothing is started on
# install (RPM convention) and no PAM file changes: see pam_toopher(8) to enable it.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -eq 1 ]; then
        systemctl --no-reload preset toopherd.service >/dev/null 2>&1 || :
    fi
fi
exit 0

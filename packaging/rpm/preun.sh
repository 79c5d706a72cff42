# %preun of pam-toopher (RPM). $1: 0 on erase, 1 on upgrade.
if [ "$1" -eq 0 ]; then
    # PAM files that still use the module would deny their logins once it is gone.
    refs=$(grep -lE '^[[:space:]]*[^#].*(pam_toopher\.so|toopher-auth)' /etc/pam.d/* 2>/dev/null | grep -v '^/etc/pam.d/toopher-auth$' || :)
    if [ -n "$refs" ]; then
        echo "pam-toopher: WARNING: these PAM files still use pam_toopher, which is being" >&2
        echo "pam-toopher: removed; logins through them will fail until you edit them:" >&2
        for f in $refs; do echo "pam-toopher:   $f" >&2; done
    fi
    # %systemd_preun
    if [ -d /run/systemd/system ]; then
        systemctl --no-reload disable --now toopherd.service >/dev/null 2>&1 || :
    fi
fi
exit 0

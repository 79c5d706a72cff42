# %pre of pam-toopher (RPM). $1: 1 on install, 2 on upgrade.
# The system user toopherd runs as (Fedora's dynamic allocation recipe).
getent group toopherd >/dev/null || groupadd -r toopherd
getent passwd toopherd >/dev/null || \
    useradd -r -g toopherd -d /var/lib/toopherd -M -s /sbin/nologin \
        -c "pam_toopher daemon" toopherd
exit 0

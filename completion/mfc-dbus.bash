# bash completion for mfc-dbus(1)                                    -*- shell-script -*-
# Installed as /usr/share/bash-completion/completions/mfc-dbus.

_mfc_dbus_interfaces()
{
    local names
    names=$(command ls /sys/class/net 2>/dev/null)
    COMPREPLY+=($(compgen -W "$names" -- "$cur"))
}

_mfc_dbus()
{
    local cur prev words cword
    if declare -F _init_completion >/dev/null; then
        _init_completion || return
    else
        cur=${COMP_WORDS[COMP_CWORD]}
        prev=${COMP_WORDS[COMP_CWORD-1]}
        words=("${COMP_WORDS[@]}")
        cword=$COMP_CWORD
    fi

    local options="-j --json -p --pretty -s --stats -4 -6 --no-ask-password --timeout
        --address -V --version -h --help"
    local objects="route vif group mfc show monitor reload batch diagnose status config help"

    # The object and its command: the first two words that are not options.
    local i obj="" verb="" nargs=0 in_oifs=""
    for ((i = 1; i < cword; i++)); do
        case ${words[i]} in
            --timeout|--address) ((i++)); continue ;;
            -*) [[ ${words[i]} == --oifs ]] && in_oifs=1 || in_oifs=""; continue ;;
        esac
        if [[ -z $obj ]]; then obj=${words[i]}
        elif [[ -z $verb ]]; then verb=${words[i]}
        else ((nargs++))
        fi
        case ${words[i]} in oif|oifs|outputs) in_oifs=1 ;; esac
    done

    case $prev in
        --timeout|--address|table|threshold|ttl-threshold|count|interval|from|source|to)
            return ;;
        group)  # the object, or route's and diagnose's keyword
            [[ $obj == g* && -z $verb ]] || return ;;
        family)
            COMPREPLY=($(compgen -W "ipv4 ipv6" -- "$cur")); return ;;
        iif|input|dev|--iif)
            _mfc_dbus_interfaces; return ;;
    esac

    if [[ $cur == -* ]]; then
        local extra=""
        [[ $obj == mfc* ]] && extra="--source --group --iif --oifs --table --lease --temporary"
        COMPREPLY=($(compgen -W "$options $extra" -- "$cur"))
        return
    fi
    if [[ -z $obj ]]; then
        COMPREPLY=($(compgen -W "$objects" -- "$cur"))
        return
    fi

    case $obj in
        ro*|r) obj=route ;; v*) obj=vif ;; g*) obj=group ;; m|mf*) obj=mfc ;; mo*) obj=monitor ;;
        b*) obj=batch ;; d*) obj=diagnose ;; c*) obj=config ;;
    esac
    case $obj in
        route|vif|mfc)
            if [[ -z $verb ]]; then
                local verbs="add del show"
                [[ $obj == route ]] && verbs="add del show flush add-output del-output"
                COMPREPLY=($(compgen -W "$verbs list delete" -- "$cur"))
                return
            fi
            ;;
        group)
            if [[ -z $verb ]]; then
                COMPREPLY=($(compgen -W "join leave show list" -- "$cur"))
                return
            fi
            ;;
        batch)
            [[ -z $verb ]] && { compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur") -); }
            return ;;
        config)
            if [[ -z $verb ]]; then
                COMPREPLY=($(compgen -W "check export import" -- "$cur"))
            elif [[ $verb != e* ]] && ((nargs == 0)); then
                compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur"))
            fi
            return ;;
        monitor)
            COMPREPLY=($(compgen -W "count" -- "$cur")); return ;;
        diagnose)
            COMPREPLY=($(compgen -W "table interval" -- "$cur")); return ;;
        *) return ;;
    esac

    if [[ -n $in_oifs ]]; then
        _mfc_dbus_interfaces
    fi
    case $obj:$verb in
        route:add-*|route:del-*) COMPREPLY+=($(compgen -W "from iif oif table" -- "$cur")) ;;
        route:a*) COMPREPLY+=($(compgen -W "from iif oif table lease temporary replace" -- "$cur")) ;;
        route:d*) COMPREPLY+=($(compgen -W "from iif table" -- "$cur")) ;;
        route:s*|route:l*) COMPREPLY+=($(compgen -W "from table family" -- "$cur")) ;;
        route:f*) COMPREPLY+=($(compgen -W "learned table family" -- "$cur")) ;;
        group:j*)
            ((nargs == 0)) && _mfc_dbus_interfaces
            ((nargs >= 2)) && COMPREPLY+=($(compgen -W "source table lease temporary" -- "$cur")) ;;
        group:l*)
            ((nargs == 0)) && _mfc_dbus_interfaces
            ((nargs >= 2)) && COMPREPLY+=($(compgen -W "source table" -- "$cur")) ;;
        group:s*)
            ((nargs == 0)) && _mfc_dbus_interfaces
            COMPREPLY+=($(compgen -W "table family" -- "$cur")) ;;
        vif:a*)
            ((nargs == 0)) && _mfc_dbus_interfaces
            COMPREPLY+=($(compgen -W "family table threshold mrdisc temporary" -- "$cur")) ;;
        vif:*)
            ((nargs == 0)) && _mfc_dbus_interfaces
            COMPREPLY+=($(compgen -W "family table" -- "$cur")) ;;
    esac
} && complete -F _mfc_dbus mfc-dbus

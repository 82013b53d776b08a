# fish completion for nitroctl: commands, options, and the services of the
# running nitro (from `nitroctl list`; instance names may contain spaces).

function __nitroctl_services
    nitroctl list 2>/dev/null | sed -E 's/^[A-Z]+ //; s/( \(pid [0-9]+\))? \(wstatus -?[0-9]+\) [0-9]+s$//'
end

set -l commands list status info metrics scan rescan up down start stop restart \
    fast-start fast-restart fast-stop ready wait-up wait-down wait-starting \
    pidof check pause cont hup alarm interrupt quit term kill 1 2 events \
    Shutdown Reboot
set -l no_services info metrics scan rescan Shutdown Reboot

complete -c nitroctl -f
complete -c nitroctl -s t -r -d 'give up waiting after SECONDS'
complete -c nitroctl -s v -d 'print state changes while waiting'
complete -c nitroctl -s T -d 'start state change lines with the UTC time'
complete -c nitroctl -l json -d 'print JSON'
complete -c nitroctl -n "not __fish_seen_subcommand_from $commands" -a "$commands"
complete -c nitroctl -n "__fish_seen_subcommand_from $commands; and not __fish_seen_subcommand_from $no_services" -a '(__nitroctl_services)'

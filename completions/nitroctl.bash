# bash completion for nitroctl: commands, options, and the services of the
# running nitro (from `nitroctl list`; instance names may contain spaces).

# One name per line: the list line without its state and its numbers.
_nitroctl_services() {
	nitroctl list 2>/dev/null | sed -E 's/^[A-Z]+ //; s/( \(pid [0-9]+\))? \(wstatus -?[0-9]+\) [0-9]+s$//'
}

# The services starting with the word being typed, quoted for the line.
_nitroctl_complete_services() {
	local typed=${1//\\ / } name
	COMPREPLY=()
	while IFS= read -r name; do
		[[ $name == "$typed"* ]] && COMPREPLY+=("$(printf '%q' "$name")")
	done < <(_nitroctl_services)
}

_nitroctl() {
	local cur prev words cword
	_init_completion 2>/dev/null || {
		cur=${COMP_WORDS[COMP_CWORD]}
		prev=${COMP_WORDS[COMP_CWORD-1]}
		words=("${COMP_WORDS[@]}")
		cword=$COMP_CWORD
	}
	local commands="list status info metrics scan rescan up down start stop restart
		fast-start fast-restart fast-stop ready wait-up wait-down wait-starting
		pidof check pause cont hup alarm interrupt quit term kill 1 2 events
		Shutdown Reboot"
	if [ "$prev" = -t ]; then
		return
	fi
	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "-t -v -T --json" -- "$cur"))
		return
	fi
	local i command=
	for ((i = 1; i < cword; i++)); do
		case ${words[i]} in
		-t) ((i++)) ;;
		-*) ;;
		*) command=${words[i]}; break ;;
		esac
	done
	if [ -z "$command" ]; then
		COMPREPLY=($(compgen -W "$commands" -- "$cur"))
		return
	fi
	case $command in
	info | metrics | scan | s | rescan | Shutdown | Reboot) ;;
	*) _nitroctl_complete_services "$cur" ;;
	esac
}
complete -F _nitroctl nitroctl

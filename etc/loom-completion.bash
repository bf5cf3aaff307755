# bash completion for loom: installed as
# share/bash-completion/completions/loom (docs/install.md).
#
# The words come from loom itself at completion time: `loom [SUBCOMMAND...]
# --help` lists the subcommands and options of each command, so the
# completion follows the installed binary. Without a loom to ask (not in
# PATH, or it fails), nothing is completed and nothing is printed.

# Prints the subcommands (kind "subs") or the option names (kind "opts")
# that HELP, a CLI11 --help text, lists.
_loom_help_words() {
  local kind=$1 help=$2
  awk -v kind="$kind" '
    /^[^ ].*:$/ { section = $0; next }
    !/^  [^ ]/ { next }
    kind == "subs" && section == "Subcommands:" { print $1; next }
    kind == "opts" && section != "Subcommands:" && $1 ~ /^-/ {
      n = split($1, names, ",")
      for (i = 1; i <= n; i++) print names[i]
    }
  ' <<<"$help" 2>/dev/null
}

_loom() {
  local cur=${COMP_WORDS[COMP_CWORD]}
  local prog=${COMP_WORDS[0]}
  COMPREPLY=()
  # The loom being completed; quietly nothing if there is none.
  command -v -- "$prog" >/dev/null 2>&1 || return 0

  # The subcommands typed so far, each one known to its parent command.
  local -a path=()
  local help i w
  help=$("$prog" --help 2>/dev/null) || return 0
  for ((i = 1; i < COMP_CWORD; i++)); do
    w=${COMP_WORDS[i]}
    if [[ $w == -- ]]; then
      # What follows is a command to run (loom start -- loom run ...).
      compopt -o default 2>/dev/null
      return 0
    fi
    [[ $w == -* ]] && continue
    if [[ $'\n'$(_loom_help_words subs "$help")$'\n' == *$'\n'"$w"$'\n'* ]]; then
      path+=("$w")
      help=$("$prog" "${path[@]}" --help 2>/dev/null) || return 0
    fi
  done

  local words
  if [[ $cur == -* ]]; then
    words=$(_loom_help_words opts "$help")
  else
    words=$(_loom_help_words subs "$help")
    if [[ -z $words ]]; then
      # A command's own arguments (a program to run, a file, ...).
      compopt -o default 2>/dev/null
      return 0
    fi
  fi
  local IFS=$'\n'
  # shellcheck disable=SC2207  # one word per line, none with spaces
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}

complete -F _loom loom

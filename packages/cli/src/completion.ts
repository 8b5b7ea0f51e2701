// `sandlot completion`: a bash completion script made from the commands and options commander
// knows, so it never goes stale. Sandbox ids complete from `sandlot ls --json`.
import type { Command } from 'commander'

const words = (c: Command) => [...c.commands.map((s) => s.name()), ...c.options.flatMap((o) => [o.long, o.short].filter((f): f is string => !!f))]

export function completion(program: Command): string {
  const cases = program.commands.flatMap((c) => {
    const own = [`    ${c.name()}) opts="${words(c).join(' ')}" ;;`]
    return c.commands.length ? [...own, ...c.commands.map((s) => `    ${c.name()}_${s.name()}) opts="${words(s).join(' ')}" ;;`)] : own
  })
  return `# bash completion for sandlot (sandlot completion)
_sandlot() {
  local cur=\${COMP_WORDS[COMP_CWORD]} key=\${COMP_WORDS[1]} opts ids
  if [ "$COMP_CWORD" -eq 1 ]; then opts="${words(program).join(' ')}"
  else
    [ "$COMP_CWORD" -gt 2 ] && [ -n "\${COMP_WORDS[2]}" ] && [ "\${COMP_WORDS[2]#-}" = "\${COMP_WORDS[2]}" ] && case "$key" in template|templates) key=template_\${COMP_WORDS[2]} ;; esac
    case "$key" in
${cases.join('\n')}
    esac
    case "$key" in exec|shell|kill|keep-alive|network|url|cp)
      ids=$(sandlot ls --json 2>/dev/null | sed -n 's/^    "id": "\\(.*\\)",$/\\1/p') ;; esac
  fi
  COMPREPLY=($(compgen -W "$opts $ids" -- "$cur"))
}
complete -o default -F _sandlot sandlot`
}

import { describe, expect, it } from 'vitest';
import { runProcess } from '../src/process.js';

/**
 * A shell that prints its own niceness (the 19th field of /proc/<pid>/stat) once it equals
 * WANT, or after 100,000 reads (only builtins: no fork), as the niceness is set just after
 * the spawn.
 */
const NICENESS = [
  '-c',
  'i=0; while [ $i -lt 100000 ]; do read -r a b c d e f g h j k l m n o p q r s t rest < /proc/$$/stat; [ "$t" = "$WANT" ] && break; i=$((i+1)); done; echo $t',
];

describe('runProcess', () => {
  it('when a process is asked to run nice, then it runs at that niceness, and others at the default', async () => {
    const seen = (want: number, nice?: number) => {
      const lines: string[] = [];
      const args = [NICENESS[0] as string, `WANT=${want}; ${NICENESS[1] as string}`];
      return runProcess('sh', args, {
        onStdoutLine: (l) => lines.push(l),
        ...(nice !== undefined && { nice }),
      }).then((r) => ({ code: r.code, niceness: Number(lines[0]) }));
    };
    expect(await seen(10, 10)).toEqual({ code: 0, niceness: 10 });
    expect(await seen(0)).toEqual({ code: 0, niceness: 0 });
    // Out of range is clamped, not an error.
    expect(await seen(19, 40)).toEqual({ code: 0, niceness: 19 });
  });

  it('when the executable does not exist, then it rejects with tool.missing', async () => {
    await expect(runProcess('/nonexistent/tool', [])).rejects.toMatchObject({ code: 'tool.missing' });
  });
});

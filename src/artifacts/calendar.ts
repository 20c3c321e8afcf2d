/**
 * A cron schedule (the model's `backup.schedule`, validated by values.ts cronProblem) in
 * systemd's calendar syntax, for a timer's OnCalendar= lines. Both read local time.
 *
 * Where the two differ:
 * - systemd has no `*` with a step: cron's `*\/15` (every 15 from the field's first value) is
 *   `0/15` for minutes and hours, `1/2` for days and months.
 * - Ranges are `a..b`; weekdays are names (cron's 0 and 7 are both Sunday).
 * - cron runs a job when the day of month OR the weekday matches if both fields are restricted
 *   (neither starts with `*`), and when both match otherwise (Vixie cron's DOM_STAR/DOW_STAR);
 *   OnCalendar= always needs both, so the OR case becomes two OnCalendar= lines, which a timer
 *   takes as "either".
 * - `a/step` (no range) is read as "a, then every step up to the field's maximum", as systemd and
 *   cronie read it.
 */

const MACROS: Record<string, string> = {
  "@hourly": "0 * * * *",
  "@daily": "0 0 * * *",
  "@midnight": "0 0 * * *",
  "@weekly": "0 0 * * 0",
  "@monthly": "0 0 1 * *",
  "@yearly": "0 0 1 1 *",
  "@annually": "0 0 1 1 *",
};

const FIRST = { minute: 0, hour: 0, day: 1, month: 1 } as const;
const DAY_NAMES = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"] as const;

interface Part {
  readonly star: boolean;
  readonly from: number | undefined;
  readonly to: number | undefined;
  readonly step: number | undefined;
}

function parts(field: string): Part[] {
  return field.split(",").map((part) => {
    const m = /^(\*|(\d+)(?:-(\d+))?)(?:\/(\d+))?$/.exec(part);
    if (!m) throw new Error(`internal: unvalidated cron field ${JSON.stringify(field)}`);
    const num = (s: string | undefined) => (s === undefined ? undefined : Number(s));
    return { star: m[1] === "*", from: num(m[2]), to: num(m[3]), step: num(m[4]) };
  });
}

/** One cron field of minutes, hours, days or months in systemd's syntax (two digits, as systemd normalizes). */
function numericField(field: string, first: number): string {
  const pad = (n: number) => String(n).padStart(2, "0");
  return parts(field)
    .map((p) => {
      if (p.star) return p.step === undefined ? "*" : `${pad(first)}/${p.step}`;
      const range = p.to === undefined ? pad(p.from!) : `${pad(p.from!)}..${pad(p.to)}`;
      return p.step === undefined ? range : `${range}/${p.step}`;
    })
    .join(",");
}

/** The weekdays a cron field names, Monday first, as systemd names and ranges them. */
function weekdayField(field: string): string {
  const days = new Set<number>();
  for (const p of parts(field)) {
    const from = p.star ? 0 : p.from!;
    const to = p.star ? 7 : (p.to ?? (p.step === undefined ? p.from! : 7));
    for (let d = from; d <= to; d += p.step ?? 1) days.add(d % 7);
  }
  // Monday first, so a run such as Mon..Fri stays one range; Sunday (0) sorts last.
  const order = [...days].map((d) => (d === 0 ? 7 : d)).sort((a, b) => a - b);
  const runs: [number, number][] = [];
  for (const d of order) {
    const last = runs[runs.length - 1];
    if (last && last[1] === d - 1) last[1] = d;
    else runs.push([d, d]);
  }
  const name = (d: number) => DAY_NAMES[d % 7]!;
  return runs.map(([a, b]) => (a === b ? name(a) : b === a + 1 ? `${name(a)},${name(b)}` : `${name(a)}..${name(b)}`)).join(",");
}

/** The OnCalendar= values that fire exactly when the cron schedule does (one, or two for cron's day OR weekday). */
export function onCalendar(schedule: string): string[] {
  const expanded = MACROS[schedule] ?? schedule;
  const [minute, hour, dom, month, dow] = expanded.split(" ") as [string, string, string, string, string];
  const time = `${numericField(hour, FIRST.hour)}:${numericField(minute, FIRST.minute)}:00`;
  const date = (day: string) => `*-${numericField(month, FIRST.month)}-${numericField(day, FIRST.day)}`;
  const domStar = dom.startsWith("*");
  const dowStar = dow.startsWith("*");
  const weekdays = dow === "*" ? "" : `${weekdayField(dow)} `;
  const values = !domStar && !dowStar ? [`${date(dom)} ${time}`, `${weekdayField(dow)} ${date("*")} ${time}`] : [`${weekdays}${date(dom)} ${time}`];
  // Built from a validated schedule, so only these characters: nothing a unit file reads specially.
  for (const v of values) if (!/^[A-Za-z0-9*.,:\/ -]+$/.test(v)) throw new Error(`internal: OnCalendar value ${JSON.stringify(v)}`);
  return values;
}

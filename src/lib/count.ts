const english = new Intl.PluralRules('en');

/** A count with its noun as a person writes it: "1 day", "2 days", "0 characters". */
export function count(n: number, one: string, other = `${one}s`): string {
  return `${n} ${english.select(n) === 'one' ? one : other}`;
}

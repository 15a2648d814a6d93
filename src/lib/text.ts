/** `text` cut to at most `max` characters, with a visible marker saying how much was cut. */
export function truncateText(text: string, max: number): string {
  if (text.length <= max) return text;
  // The marker takes room too: it counts every character it stands for, its own room included.
  for (let cut = text.length - max; ; ) {
    const marker = ` … [truncated: ${cut} more characters]`;
    const kept = Math.max(0, max - marker.length);
    if (text.length - kept === cut) return text.slice(0, kept) + marker;
    cut = text.length - kept;
  }
}

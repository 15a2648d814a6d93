/** `text` cut to at most `max` characters, with a visible marker saying how much was cut. */
export function truncateText(text: string, max: number): string {
  if (text.length <= max) return text;
  const marker = ` … [truncated: ${text.length - max} more characters]`;
  return text.slice(0, Math.max(0, max - marker.length)) + marker;
}

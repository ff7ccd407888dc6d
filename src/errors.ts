// One error tree for people (style.md "Errors"): every class carries a one-line message naming the file, key or value at fault.
export class PvboxError extends Error {
  constructor(message: string) { super(message); this.name = new.target.name; }
}
/** A command-line argument or option is wrong. */
export class UsageError extends PvboxError {}
/** A configuration file or value is wrong. */
export class ConfigError extends PvboxError {}
/** A kernel, ramdisk or disk image cannot be used. */
export class ImageError extends PvboxError {}
/** The host cannot do what is needed (no /dev/kvm, no permission, missing tool). */
export class HostError extends PvboxError {}

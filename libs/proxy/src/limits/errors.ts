/** Invalid limits configuration; thrown once, by constructors, with a message that names the option. */
export class LimitsConfigError extends Error {
  readonly code = 'AMIME_ERR_LIMITS_CONFIG';
  constructor(message: string) {
    super(message);
    this.name = 'LimitsConfigError';
  }
}

// The napi-rs platform key of this machine (`linux-x64-gnu`, `linux-arm64-musl`, …): which prebuilt
// binary package fits it.

export function libcFlavor(): 'gnu' | 'musl' {
  const report = process.report?.getReport?.() as { header?: { glibcVersionRuntime?: string } } | undefined;
  return report?.header?.glibcVersionRuntime ? 'gnu' : 'musl';
}

export function platformKey(platform: string = process.platform, arch: string = process.arch, libc: string = libcFlavor()): string {
  return platform === 'linux' ? `linux-${arch}-${libc}` : `${platform}-${arch}`;
}

/** Targets we publish prebuilt binaries for (keep in step with package.json napi.targets). */
export const PREBUILT_PLATFORMS = ['linux-x64-gnu', 'linux-arm64-gnu', 'linux-x64-musl'];

/** The one message a user sees when no binary fits: what is missing and what to do about it. */
export function missingBinaryMessage(key: string, packageName = 'sg-agent'): string {
  const pkg = `${packageName}-${key}`;
  const lines = [`sg-agent: no native binary for this platform (${key}).`];
  if (PREBUILT_PLATFORMS.includes(key)) {
    lines.push(
      `The prebuilt binary ships in the optional package "${pkg}", which is not installed.`,
      `Install it with: npm install ${pkg}@<same version as sg-agent>`,
      'or reinstall sg-agent without --omit=optional / --no-optional.',
    );
  } else {
    lines.push(`No prebuilt binary is published for ${key} (prebuilt: ${PREBUILT_PLATFORMS.join(', ')}).`);
  }
  lines.push('To build it from source instead (needs a Rust toolchain): npm run build:native in a checkout.');
  return lines.join('\n');
}

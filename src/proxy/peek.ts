import type { Duplex } from 'node:stream';

/** Wait for the first bytes of a stream without consuming them (null when it ends or times out first). */
export function peek(stream: Duplex, timeoutMs: number): Promise<Buffer | null> {
  return new Promise((resolve) => {
    const done = (chunk: Buffer | null): void => {
      clearTimeout(timer);
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('close', onEnd);
      stream.off('error', onEnd);
      resolve(chunk);
    };
    const onData = (chunk: Buffer): void => {
      stream.pause();
      stream.unshift(chunk);
      done(chunk);
    };
    const onEnd = (): void => done(null);
    const timer = setTimeout(() => done(null), timeoutMs);
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.once('close', onEnd);
    stream.once('error', onEnd);
    // A stream paused by an earlier peek stays paused when a 'data' listener is added: let it flow again.
    stream.resume();
  });
}

/** Key types Rampart generates, in one place the CLI can load without the certificate code. */
export type KeyType = 'ec-p256' | 'ec-p384' | 'rsa-2048' | 'rsa-3072' | 'rsa-4096';
export const KEY_TYPES: readonly KeyType[] = ['ec-p256', 'ec-p384', 'rsa-2048', 'rsa-3072', 'rsa-4096'];

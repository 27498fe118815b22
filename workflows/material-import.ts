// Wrapping an HSM key under fresh import parameters and, once approved, importing it, replacing
// an import token that expired meanwhile; afterwards, recording the HSM key on the KMS key. Shared
// by every workflow that puts HSM material into a KMS key (import, restore, reimport, rotation);
// the approval between the two halves is the caller's.
import { ApplicationFailure, isCancellation, log, patched } from '@temporalio/workflow';
import type { HsmKeyRef } from '../activities/hsm';
import type { ImportedMaterial, ImportKeyMaterialInput, ImportParameters } from '../activities/kms';
import { ErrorType } from './errors';
import type { ExpirationModel, WrappingAlgorithm, WrappingKeySpec } from './model';
import { hsm, kms } from './proxies';
import { failureType, runStep, stepFailure } from './step-failure';

export interface MaterialImportOptions {
  keyId: string;
  hsmKey: HsmKeyRef;
  wrappingAlgorithm: WrappingAlgorithm;
  wrappingKeySpec: WrappingKeySpec;
  tokenSafetyMarginMs: number;
  maxTokenRefreshes: number;
  /** Told when wrapping or importing starts (and what happens now), for the caller's status and progress. */
  onStep(step: 'WRAPPING' | 'IMPORTING', doing: string): void;
}

export interface MaterialToImport {
  expirationModel: ExpirationModel;
  validTo?: string;
  importType?: ImportKeyMaterialInput['importType'];
  keyMaterialDescription?: string;
}

const TOKEN_ERRORS: string[] = [ErrorType.ImportTokenExpired, ErrorType.ImportTokenInvalid];

export class MaterialImport {
  params?: ImportParameters;
  tokenRefreshes = 0;
  private encryptedKeyMaterial?: string;

  constructor(private readonly o: MaterialImportOptions) {}

  /** When the current token is considered too old to import with. */
  refreshAfter(p: ImportParameters = this.params!): Date {
    return new Date(Date.parse(p.parametersValidTo) - this.o.tokenSafetyMarginMs);
  }

  /** GetParametersForImport, then C_WrapKey in the HSM under the new public key. */
  async wrap(): Promise<void> {
    const o = this.o;
    o.onStep('WRAPPING', 'getting a wrapping key and import token from KMS');
    this.params = await runStep('GetParametersForImport', () =>
      kms.getImportParameters.executeWithOptions({ summary: `GetParametersForImport for ${o.keyId} (${o.wrappingAlgorithm}, ${o.wrappingKeySpec})` }, [
        { keyId: o.keyId, wrappingAlgorithm: o.wrappingAlgorithm, wrappingKeySpec: o.wrappingKeySpec },
      ]),
    );
    const params = this.params;
    o.onStep('WRAPPING', 'wrapping the HSM key in the HSM');
    const wrapped = await runStep('wrapping in the HSM', () =>
      hsm.wrapKey.executeWithOptions({ summary: `Wrap HSM key ${o.hsmKey.label} (KCV ${o.hsmKey.kcv}) under the KMS wrapping key` }, [
        { label: o.hsmKey.label, keyId: o.hsmKey.keyId, publicKey: params.publicKey, wrappingAlgorithm: o.wrappingAlgorithm },
      ]),
    );
    this.encryptedKeyMaterial = wrapped.encryptedKeyMaterial;
  }

  /** ImportKeyMaterial after approval: a token that is too old or refused is replaced, within the limit. */
  async importApproved(material: MaterialToImport): Promise<ImportedMaterial> {
    this.o.onStep('IMPORTING', 'importing the wrapped key material into KMS');
    if (Date.now() >= this.refreshAfter().getTime()) {
      await this.refresh(`valid only until ${this.params!.parametersValidTo}`);
    }
    for (;;) {
      this.o.onStep('IMPORTING', 'importing the wrapped key material into KMS');
      try {
        return await kms.importKeyMaterial.executeWithOptions({ summary: `ImportKeyMaterial into ${this.o.keyId} (${material.expirationModel})` }, [
          {
            keyId: this.o.keyId,
            importToken: this.params!.importToken,
            encryptedKeyMaterial: this.encryptedKeyMaterial!,
            ...material,
          },
        ]);
      } catch (err) {
        const type = failureType(err);
        if (!type || !TOKEN_ERRORS.includes(type)) throw stepFailure('ImportKeyMaterial', err);
        await this.refresh(`refused by KMS (${type})`);
      }
    }
  }

  private async refresh(why: string): Promise<void> {
    const limit = this.o.maxTokenRefreshes;
    if (this.tokenRefreshes >= limit) {
      throw ApplicationFailure.nonRetryable(`import token ${why}, and the limit of ${limit} token refreshes is reached`, ErrorType.TokenRefreshLimit);
    }
    this.tokenRefreshes++;
    log.info('refreshing import parameters', { why, tokenRefreshes: this.tokenRefreshes });
    await this.wrap();
  }
}

/**
 * Tags the KMS key with the HSM key whose material it now holds (byok:hsm-key-label/-id, byok:kcv),
 * so restore and the expiry guardian find it from the alias alone. The material is in by then: a
 * key that cannot be tagged is a warning, not a failed import. Runs recorded before the tags
 * existed do not call it (their histories have no such activity).
 */
export async function recordHsmKey(keyId: string, hsmKey: HsmKeyRef): Promise<void> {
  if (!patched('record-hsm-key-tags')) return;
  await kms.recordHsmKey
    .executeWithOptions({ summary: `Tag ${keyId} with HSM key ${hsmKey.label} (KCV ${hsmKey.kcv})` }, [
      { keyId, hsmKey: { label: hsmKey.label, keyId: hsmKey.keyId, kcv: hsmKey.kcv } },
    ])
    .catch((err: unknown) => {
      if (isCancellation(err)) throw err;
      log.warn('could not tag the KMS key with its HSM key; a restore will need --hsm-key-label', { keyId, error: String((err as Error).cause ?? err) });
    });
}

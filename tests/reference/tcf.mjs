// Random TC strings encoded by the IAB's own library (@iabtcf/core), one JSON line per case:
// the encoded string and exactly what was put in. tests/privacy/test_tcf_reference.py decodes
// every string with cookiematch and compares.
//
//   node tests/reference/tcf.mjs [count=1000] [seed=1]
//
// The encoder needs a Global Vendor List: each case builds a synthetic one (vendors with random
// purposes, legitimate-interest, flexible and special purposes). The encoder's "semantic
// pre-encoding" rewrites a few inputs; the generator only puts in what survives it unchanged:
// every vendor declares at least one consent and one legitimate-interest purpose (else its
// bit would be cleared), purpose 1 never gets a legitimate-interest bit, the consent language
// is the GVL's, and the disclosed vendors are the GVL's vendors (the encoder writes those).
// Publisher restrictions are encoded as ranges that may span IDs missing from the GVL, as the
// spec allows: the test compares them on the GVL's vendors.
import {
  GVL,
  PurposeRestriction,
  TCModel,
  TCString,
  Vector,
  VendorVectorEncoder,
} from '@iabtcf/core';

const count = Number(process.argv[2] ?? 1000);
let state = Number(process.argv[3] ?? 1) >>> 0;

// mulberry32: a small seeded generator, so that a seed names one corpus
function random() {
  state = (state + 0x6d2b79f5) >>> 0;
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const int = (lo, hi) => lo + Math.floor(random() * (hi - lo + 1)); // inclusive
const chance = (p) => random() < p;
const pick = (items) => items[int(0, items.length - 1)];
const range = (lo, hi) => Array.from({ length: Math.max(0, hi - lo + 1) }, (_, i) => lo + i);
const subset = (items, p) => items.filter(() => chance(p));
const letters = () => String.fromCharCode(65 + int(0, 25), 65 + int(0, 25));
const sorted = (ids) => [...ids].sort((a, b) => a - b);

// Vendor IDs in one of the shapes that matter to the encodings.
function vendorIds() {
  switch (pick(['none', 'few', 'runs', 'dense', 'dense', 'high'])) {
    case 'none':
      return [];
    case 'few': // sparse: range encoding
      return [...new Set(range(1, int(1, 12)).map(() => int(1, 3000)))];
    case 'runs': { // contiguous runs: range encoding with id ranges
      const ids = new Set();
      for (let r = int(1, 6), start = int(1, 200); r > 0; r--, start += int(2, 300)) {
        range(start, start + int(0, 80)).forEach((id) => ids.add(id));
      }
      return [...ids];
    }
    case 'dense': // bitfield encoding
      return subset(range(1, int(50, 1200)), pick([0.3, 0.5, 0.9]));
    default: // a few IDs up to the 16-bit limit
      return [...new Set([int(1, 100), int(1000, 65535), int(1000, 65535)])];
  }
}

function declarations() {
  const consent = new Set(chance(0.8) ? [1] : []);
  const legInt = new Set();
  for (const purpose of range(2, 11)) {
    const basis = int(0, 2);
    if (basis === 1) consent.add(purpose);
    if (basis === 2) legInt.add(purpose);
  }
  if (legInt.size === 0) {
    const purpose = int(2, 11);
    consent.delete(purpose);
    legInt.add(purpose);
  }
  if (consent.size === 0) consent.add(1);
  return {
    purposes: sorted(consent),
    legIntPurposes: sorted(legInt),
    flexiblePurposes: subset([...consent, ...legInt].filter((p) => p !== 1), 0.3),
    specialPurposes: subset([1, 2], 0.5),
    features: subset([1, 2, 3], 0.5),
    specialFeatures: subset([1, 2], 0.5),
  };
}

const named = (ids) => Object.fromEntries(ids.map((id) => [id, { id, name: `n${id}`, description: '' }]));

function syntheticGvl(ids) {
  const vendors = Object.fromEntries(ids.map((id) => [id, {
    id, name: `vendor ${id}`, policyUrl: 'https://vendor.example/privacy', ...declarations(),
  }]));
  const gvl = new GVL({
    gvlSpecificationVersion: 3,
    vendorListVersion: int(1, 4095),
    tcfPolicyVersion: chance(0.8) ? pick([4, 5]) : int(0, 63),
    lastUpdated: '2024-01-01T00:00:00Z',
    purposes: named(range(1, 11)),
    specialPurposes: named([1, 2]),
    features: named([1, 2, 3]),
    specialFeatures: named([1, 2]),
    stacks: {},
    dataCategories: {},
    vendors,
  });
  return gvl;
}

// The encoder writes the GVL's language. A synthetic list has no translations to load, so
// every consent language is cached with the English texts: changing language loads nothing.
const LANGUAGES = [];
GVL.consentLanguages.forEach((lang) => LANGUAGES.push(lang));
const TEXTS = ['purposes', 'specialPurposes', 'features', 'specialFeatures', 'stacks'];

// Restrictions the encoder keeps: NOT_ALLOWED on a declared purpose, REQUIRE_CONSENT on a
// flexible legitimate-interest purpose, REQUIRE_LI on a flexible consent purpose.
function allowedRestrictions(vendor) {
  const options = [];
  for (const p of [...vendor.purposes, ...vendor.legIntPurposes]) options.push([p, 0]);
  for (const p of vendor.flexiblePurposes) options.push([p, vendor.legIntPurposes.includes(p) ? 1 : 2]);
  return options;
}

const vectorOf = (ids) => {
  const vector = new Vector();
  vector.set(ids);
  return vector;
};
const vendorSet = (vector) => ({
  max_id: vector.maxId,
  ids: sorted(vector.values()),
  encoding: VendorVectorEncoder.encode(vector)[16] === '1' ? 'range' : 'bitfield',
});

async function oneCase() {
  const ids = sorted(vendorIds());
  const gvl = syntheticGvl(ids);
  const language = pick(LANGUAGES);
  if (!GVL.LANGUAGE_CACHE.has(language)) {
    GVL.LANGUAGE_CACHE.set(language, Object.fromEntries(TEXTS.map((key) => [key, gvl[key]])));
  }
  await gvl.changeLanguage(language);
  const tc = new TCModel(gvl);
  tc.cmpId = int(2, 4095);
  tc.cmpVersion = int(0, 4095);
  tc.consentScreen = int(0, 63);
  tc.publisherCountryCode = letters();
  tc.isServiceSpecific = chance(0.8);
  tc.useNonStandardStacks = chance(0.3);
  tc.purposeOneTreatment = chance(0.3);
  tc.created = new Date(int(0, 2 ** 36 - 1) * 100);
  tc.lastUpdated = chance(0.5) ? tc.created : new Date(int(0, 2 ** 36 - 1) * 100);
  tc.specialFeatureOptins.set(subset(range(1, 12), pick([0.1, 0.5, 0.9])));
  tc.purposeConsents.set(subset(range(1, 24), pick([0.1, 0.5, 0.9])));
  tc.purposeLegitimateInterests.set(subset(range(2, 24), pick([0.1, 0.5, 0.9])));
  // vendors: all, most, a few, or a contiguous run of the list's IDs
  const some = () => pick([
    () => ids,
    () => subset(ids, 0.8),
    () => subset(ids, 0.05),
    () => ids.slice(int(0, ids.length), int(0, ids.length)),
  ])();
  tc.vendorConsents.set(some());
  tc.vendorLegitimateInterests.set(some());
  const restrictions = new Map();
  for (let n = chance(0.6) ? int(1, 8) : 0; n > 0 && ids.length; n--) {
    const vendor = gvl.vendors[pick(ids)];
    const [purposeId, restrictionType] = pick(allowedRestrictions(vendor));
    const extra = subset(ids, 0.02).filter((id) =>
      allowedRestrictions(gvl.vendors[id]).some(([p, t]) => p === purposeId && t === restrictionType));
    for (const id of [vendor.id, ...extra]) {
      tc.publisherRestrictions.add(id, new PurposeRestriction(purposeId, restrictionType));
      const key = `${purposeId}-${restrictionType}`;
      if (!restrictions.has(key)) restrictions.set(key, new Set());
      restrictions.get(key).add(id);
    }
  }
  const segments = subset(['vendorsDisclosed', 'vendorsAllowed', 'publisherTC'], 0.5)
    .sort(() => random() - 0.5);
  if (segments.includes('vendorsAllowed')) tc.vendorsAllowed.set(some());
  if (segments.includes('publisherTC')) {
    tc.publisherConsents.set(subset(range(1, 24), 0.4));
    tc.publisherLegitimateInterests.set(subset(range(1, 24), 0.4));
    tc.numCustomPurposes = pick([0, 0, int(1, 63)]);
    tc.publisherCustomConsents.set(subset(range(1, tc.numCustomPurposes), 0.5));
    tc.publisherCustomLegitimateInterests.set(subset(range(1, tc.numCustomPurposes), 0.5));
  }
  const string = TCString.encode(tc, { segments: ['core', ...segments] });
  return {
    string,
    segments,
    gvl_vendor_ids: ids,
    created: Math.round(tc.created.getTime() / 100),
    last_updated: Math.round(tc.lastUpdated.getTime() / 100),
    cmp_id: tc.cmpId,
    cmp_version: tc.cmpVersion,
    consent_screen: tc.consentScreen,
    consent_language: gvl.language,
    vendor_list_version: gvl.vendorListVersion,
    tcf_policy_version: gvl.tcfPolicyVersion,
    is_service_specific: tc.isServiceSpecific,
    use_non_standard_texts: tc.useNonStandardStacks,
    special_feature_optins: sorted(tc.specialFeatureOptins.values()),
    purpose_consents: sorted(tc.purposeConsents.values()),
    purpose_legitimate_interests: sorted(tc.purposeLegitimateInterests.values()),
    purpose_one_treatment: tc.purposeOneTreatment,
    publisher_country_code: tc.publisherCountryCode,
    vendor_consents: vendorSet(tc.vendorConsents),
    vendor_legitimate_interests: vendorSet(tc.vendorLegitimateInterests),
    publisher_restrictions: [...restrictions].map(([key, vendors]) => {
      const [purposeId, restrictionType] = key.split('-').map(Number);
      return { purpose_id: purposeId, restriction_type: restrictionType, vendors: sorted(vendors) };
    }),
    disclosed_vendors: segments.includes('vendorsDisclosed') ? vendorSet(vectorOf(ids)) : null,
    allowed_vendors: segments.includes('vendorsAllowed') ? vendorSet(tc.vendorsAllowed) : null,
    publisher_tc: segments.includes('publisherTC') ? {
      purpose_consents: sorted(tc.publisherConsents.values()),
      purpose_legitimate_interests: sorted(tc.publisherLegitimateInterests.values()),
      num_custom_purposes: tc.numCustomPurposes,
      custom_purpose_consents: sorted(tc.publisherCustomConsents.values()),
      custom_purpose_legitimate_interests: sorted(tc.publisherCustomLegitimateInterests.values()),
    } : null,
  };
}

const lines = [];
for (let i = 0; i < count; i++) lines.push(JSON.stringify(await oneCase()));
process.stdout.write(lines.join('\n') + '\n');

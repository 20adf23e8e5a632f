// Random GPP and US Privacy strings encoded by the IAB's own library (@iabgpp/cmpapi).
//
//   node gpp.mjs SEED GPP_COUNT USP_COUNT
//
// Prints one JSON line per case:
//   {"kind": "gpp", "gpp": "DBAB...~...", "sections": {"usnat": {"Version": 2, ...}, ...},
//    "tcfeuv2": "<the library's own encoding of that section>" | null}
//   {"kind": "usp", "usp": "1YN-", "fields": {"Notice": "Y", "OptOutSale": "N", "LspaCovered": "-"}}
// "sections" holds exactly the values set, per section; GpcSegmentIncluded and Gpc only where the
// section has a GPC segment. The same seed always gives the same lines.
import { GppModel } from "@iabgpp/cmpapi";

function mulberry32(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const [seed, gppCount, uspCount] = process.argv.slice(2).map(Number);
const random = mulberry32(seed);
const below = (n) => Math.floor(random() * n);
const twoBits = () => below(3); // 0 not applicable, 1 yes / opted out, 2 no / did not opt out
const twoBitList = (n) => Array.from({ length: n }, twoBits);
const yesNoDash = () => "YN-"[below(3)];

// Each US section: its scalar 2-bit fields, its lists (name -> length), whether it has a GPC segment.
const NOTICES_AND_OPT_OUTS = {
  usnat: [
    "SharingNotice", "SaleOptOutNotice", "SharingOptOutNotice", "TargetedAdvertisingOptOutNotice",
    "SensitiveDataProcessingOptOutNotice", "SensitiveDataLimitUseNotice", "SaleOptOut",
    "SharingOptOut", "TargetedAdvertisingOptOut", "PersonalDataConsents",
  ],
  usca: [
    "SaleOptOutNotice", "SharingOptOutNotice", "SensitiveDataLimitUseNotice", "SaleOptOut",
    "SharingOptOut", "PersonalDataConsents",
  ],
  usva: ["SharingNotice", "SaleOptOutNotice", "TargetedAdvertisingOptOutNotice", "SaleOptOut",
    "TargetedAdvertisingOptOut", "KnownChildSensitiveDataConsents"],
  usco: ["SharingNotice", "SaleOptOutNotice", "TargetedAdvertisingOptOutNotice", "SaleOptOut",
    "TargetedAdvertisingOptOut", "KnownChildSensitiveDataConsents"],
  usut: ["SharingNotice", "SaleOptOutNotice", "TargetedAdvertisingOptOutNotice",
    "SensitiveDataProcessingOptOutNotice", "SaleOptOut", "TargetedAdvertisingOptOut",
    "KnownChildSensitiveDataConsents"],
  usct: ["SharingNotice", "SaleOptOutNotice", "TargetedAdvertisingOptOutNotice", "SaleOptOut",
    "TargetedAdvertisingOptOut"],
};
const LISTS = {
  usca: { SensitiveDataProcessing: 9, KnownChildSensitiveDataConsents: 2 },
  usva: { SensitiveDataProcessing: 8 },
  usco: { SensitiveDataProcessing: 7 },
  usut: { SensitiveDataProcessing: 8 },
  usct: { SensitiveDataProcessing: 8, KnownChildSensitiveDataConsents: 3 },
};
const USNAT_LISTS = {
  1: { SensitiveDataProcessing: 12, KnownChildSensitiveDataConsents: 2 },
  2: { SensitiveDataProcessing: 16, KnownChildSensitiveDataConsents: 3 },
};
const WITH_GPC = new Set(["usnat", "usca", "usco", "usct"]);
const SECTIONS = ["tcfeuv2", "uspv1", "usnat", "usca", "usva", "usco", "usut", "usct"];

function usFields(name) {
  const fields = {};
  if (name === "usnat") {
    fields.Version = 1 + below(2);
  }
  for (const field of NOTICES_AND_OPT_OUTS[name]) {
    fields[field] = twoBits();
  }
  const lists = name === "usnat" ? USNAT_LISTS[fields.Version] : LISTS[name];
  for (const [field, length] of Object.entries(lists)) {
    fields[field] = twoBitList(length);
  }
  fields.MspaCoveredTransaction = 1 + below(2);
  fields.MspaOptOutOptionMode = twoBits();
  fields.MspaServiceProviderMode = twoBits();
  if (WITH_GPC.has(name)) {
    fields.GpcSegmentIncluded = random() < 0.5;
    fields.Gpc = random() < 0.5;
  }
  return fields;
}

function tcfFields() {
  const moment = new Date(Date.UTC(2024, below(12), 1 + below(28), below(24)));
  return {
    Created: moment,
    LastUpdated: moment,
    CmpId: 1 + below(400),
    CmpVersion: below(50),
    VendorListVersion: 1 + below(200),
    PurposeConsents: Array.from({ length: 24 }, () => random() < 0.5),
    VendorConsents: Array.from({ length: below(6) }, () => 1 + below(1000)).sort((a, b) => a - b),
  };
}

function pickSections() {
  const chosen = SECTIONS.filter(() => random() < 0.35);
  return chosen.length > 0 ? chosen : [SECTIONS[below(SECTIONS.length)]];
}

for (let i = 0; i < gppCount; i++) {
  const model = new GppModel();
  const sections = {};
  for (const name of pickSections()) {
    const fields =
      name === "tcfeuv2"
        ? tcfFields()
        : name === "uspv1"
          ? { Notice: yesNoDash(), OptOutSale: yesNoDash(), LspaCovered: yesNoDash() }
          : usFields(name);
    for (const [field, value] of Object.entries(fields)) {
      model.setFieldValue(name, field, value);
    }
    if (name !== "tcfeuv2") {
      sections[name] = fields;
    }
  }
  const gpp = model.encode();
  const tcfeuv2 = model.hasSection("tcfeuv2") ? model.encodeSection("tcfeuv2") : null;
  console.log(JSON.stringify({ kind: "gpp", gpp, sections, tcfeuv2 }));
}

for (let i = 0; i < uspCount; i++) {
  const model = new GppModel();
  const fields = { Notice: yesNoDash(), OptOutSale: yesNoDash(), LspaCovered: yesNoDash() };
  for (const [field, value] of Object.entries(fields)) {
    model.setFieldValue("uspv1", field, value);
  }
  console.log(JSON.stringify({ kind: "usp", usp: model.encodeSection("uspv1"), fields }));
}

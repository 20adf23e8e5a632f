"""The IAB's TCF CMP on a test page: the script lines every CMP page of the browser tests
shares (``tests/reference/node_modules`` served under ``/node_modules/``, as ``dmp_sites``
does).

``CMP_HEAD`` loads ``@iabtcf/stub`` and maps the ES modules; ``ENCODE_TC`` (inside a module
script with ``plan`` defined: ``plan.gvl``, ``plan.purposes``, ``plan.vendors``) builds a
vendor list of those vendors and encodes, with ``@iabtcf/core``, a TC string consenting to
``plan.purposes`` and ``plan.vendors``: ``tc`` is the model, ``encoded`` the string.
"""

from __future__ import annotations

CMP_HEAD = """<script src="/node_modules/@iabtcf/stub/lib/stub.js"></script>
<script type="importmap">{"imports": {
  "@iabtcf/core": "/node_modules/@iabtcf/core/lib/mjs/index.js",
  "@iabtcf/cmpapi": "/node_modules/@iabtcf/cmpapi/lib/mjs/index.js"}}</script>
"""

ENCODE_TC = """import { CmpApi } from "@iabtcf/cmpapi";
import { GVL, TCModel, TCString } from "@iabtcf/core";
const named = (ids) => Object.fromEntries(ids.map((id) => [id, { id, name: `n${id}` }]));
const vendor = (id) => ({ id, name: `vendor ${id}`, policyUrl: "https://vendor.example/privacy",
  purposes: [1, 2, 3, 4], legIntPurposes: [], flexiblePurposes: [], specialPurposes: [],
  features: [], specialFeatures: [] });
const gvl = new GVL({ gvlSpecificationVersion: 3, vendorListVersion: 1, tcfPolicyVersion: 5,
  lastUpdated: "2024-01-01T00:00:00Z", purposes: named([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]),
  specialPurposes: named([1, 2]), features: named([1, 2, 3]), specialFeatures: named([1, 2]),
  stacks: {}, dataCategories: {},
  vendors: Object.fromEntries(plan.gvl.map((id) => [id, vendor(id)])) });
const tc = new TCModel(gvl);
tc.cmpId = 300;
tc.cmpVersion = 1;
tc.isServiceSpecific = true;
tc.purposeConsents.set(plan.purposes);
tc.vendorConsents.set(plan.vendors);
const encoded = TCString.encode(tc);
"""

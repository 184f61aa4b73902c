import test from 'ava';
import { native } from '../src/addon/native.js';

test('the addon loads and reports its version', (t) => {
  t.regex(native.nativeVersion(), /^\d+\.\d+\.\d+/);
});
